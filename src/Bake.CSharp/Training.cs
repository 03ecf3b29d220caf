using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.FSharp.Core;
using Core = Bake.Core;

namespace Bake;

/// <summary>Options of a training run. Every property left <c>null</c> keeps the value of the configuration
/// (<see cref="ConfigPath"/>, or the default job: BAKE with the small CNN on the embedded Fashion-MNIST subset).</summary>
public sealed record TrainerOptions
{
    /// <summary>A pycls-schema YAML config; <c>null</c> means the default job.</summary>
    public string? ConfigPath { get; init; }

    /// <summary>The run directory (OUT_DIR).</summary>
    public string? OutputDirectory { get; init; }

    /// <summary>A model registry name, e.g. "cnn", "preact-resnet18", "resnet50" (MODEL.TYPE).</summary>
    public string? Model { get; init; }

    /// <summary>The training data: "embedded", "fashion-mnist", "mnist", "cifar10", "cifar100" or a folder (TRAIN.DATASET).</summary>
    public string? Dataset { get; init; }

    /// <summary>A method of the table (METHOD.NAME; <see cref="BakeTrainer.Methods"/> lists them): "vanilla",
    /// "label-smoothing", "tfkd-reg", "cskd", "bake", "pskd" or "dlb".</summary>
    public string? Method { get; init; }

    /// <summary>Epochs (OPTIM.MAX_EPOCH).</summary>
    public int? Epochs { get; init; }

    /// <summary>Total images per batch, N (TRAIN.BATCH_SIZE).</summary>
    public int? BatchSize { get; init; }

    /// <summary>M, same-class images per anchor (TRAIN.INTRA_IMGS).</summary>
    public int? IntraImages { get; init; }

    /// <summary>BAKE hyper-parameters (TRAIN.OMEGA, TRAIN.TEMP, TRAIN.LAMBDA and the propagation form).</summary>
    public BakeOptions? Bake { get; init; }

    /// <summary>Base learning rate (OPTIM.BASE_LR).</summary>
    public double? BaseLearningRate { get; init; }

    /// <summary>Weight decay (OPTIM.WEIGHT_DECAY).</summary>
    public double? WeightDecay { get; init; }

    /// <summary>Random seed (RNG_SEED).</summary>
    public int? Seed { get; init; }

    /// <summary>Keep only this many training images per class (TRAIN.PER_CLASS; 0 = all).</summary>
    public int? ImagesPerClass { get; init; }

    /// <summary>Initial weights: .safetensors, .pth or an official BAKE/pycls checkpoint (TRAIN.WEIGHTS).</summary>
    public string? Weights { get; init; }

    /// <summary>"cpu", "cuda" or "cuda:N" (DEVICE).</summary>
    public string? Device { get; init; }

    /// <summary>Continue the run in <see cref="OutputDirectory"/> from its last checkpoint.</summary>
    public bool Resume { get; init; }

    /// <summary>Any other configuration keys, e.g. <c>["OPTIM.LR_POLICY"] = "steps"</c>.</summary>
    public IReadOnlyDictionary<string, string>? Overrides { get; init; }

    internal IEnumerable<string> ToOverrides()
    {
        // Keys by their declarations in the core: a mistyped key does not compile.
        static string Key(string name) => name + "=";
        string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        if (OutputDirectory is not null) yield return Key(Core.Keys.OUT_DIR.Name) + OutputDirectory;
        if (Model is not null) yield return Key(Core.Keys.MODEL.TYPE.Name) + Model;
        if (Dataset is not null) yield return Key(Core.Keys.TRAIN.DATASET.Name) + Dataset;
        if (Method is not null)
        {
            yield return Key(Core.Methods.NAME.Name) + Method;
            yield return Key(Core.Keys.TRAIN.USE_BAKE.Name) + (Method == "bake" ? "True" : "False");
        }
        if (Epochs is int epochs) yield return Key(Core.Keys.OPTIM.MAX_EPOCH.Name) + epochs;
        if (BatchSize is int batch) yield return Key(Core.Keys.TRAIN.BATCH_SIZE.Name) + batch;
        if (IntraImages is int m) yield return Key(Core.Keys.TRAIN.INTRA_IMGS.Name) + m;
        if (Bake is BakeOptions bake)
        {
            yield return Key(Core.BakeMethod.OMEGA.Name) + F(bake.Omega);
            yield return Key(Core.BakeMethod.TEMP.Name) + F(bake.Temperature);
            yield return Key(Core.BakeMethod.LAMBDA.Name) + F(bake.Lambda);
            yield return Key(Core.BakeMethod.PROPAGATION.Name) + bake.Propagation switch
            {
                PropagationForm.OneStep => "one-step",
                PropagationForm.Steps => "steps",
                _ => "closed-form",
            };
            if (bake.Propagation == PropagationForm.Steps)
                yield return Key(Core.BakeMethod.STEPS.Name) + bake.Steps;
        }
        if (BaseLearningRate is double lr) yield return Key(Core.Keys.OPTIM.BASE_LR.Name) + F(lr);
        if (WeightDecay is double wd) yield return Key(Core.Keys.OPTIM.WEIGHT_DECAY.Name) + F(wd);
        if (Seed is int seed) yield return Key(Core.Keys.RNG_SEED.Name) + seed;
        if (ImagesPerClass is int perClass) yield return Key(Core.Keys.TRAIN.PER_CLASS.Name) + perClass;
        if (Weights is not null) yield return Key(Core.Keys.TRAIN.WEIGHTS.Name) + Weights;
        if (Device is not null) yield return Key(Core.Keys.DEVICE.Name) + Device;
        foreach (var pair in Overrides ?? new Dictionary<string, string>())
            yield return pair.Key + "=" + pair.Value;
    }
}

/// <summary>Test metrics of a model. Accuracies and ECE in percent.</summary>
public sealed record EvaluationResult
{
    /// <summary>Images evaluated.</summary>
    public long Count { get; init; }
    /// <summary>Top-1 accuracy, %.</summary>
    public double Top1 { get; init; }
    /// <summary>Top-5 accuracy, %.</summary>
    public double Top5 { get; init; }
    /// <summary>Mean negative log-likelihood of the true class.</summary>
    public double Nll { get; init; }
    /// <summary>Expected calibration error (15 bins), %.</summary>
    public double Ece { get; init; }
    /// <summary>Top-1 accuracy per class name, %.</summary>
    public IReadOnlyDictionary<string, double> PerClassTop1 { get; init; } = new Dictionary<string, double>();

    internal static EvaluationResult From(Core.EvalMetrics metrics, IReadOnlyList<string> classes) => new()
    {
        Count = metrics.Count,
        Top1 = metrics.Top1,
        Top5 = metrics.Top5,
        Nll = metrics.Nll,
        Ece = metrics.Ece,
        PerClassTop1 = classes.Select((name, i) => (name, i))
            .Where(p => p.i < metrics.PerClassTop1.Length)
            .ToDictionary(p => p.name, p => metrics.PerClassTop1[p.i]),
    };
}

/// <summary>The state of training after one epoch.</summary>
public sealed record EpochMetrics
{
    /// <summary>1-based epoch.</summary>
    public int Epoch { get; init; }
    /// <summary>Total epochs of the run.</summary>
    public int Epochs { get; init; }
    /// <summary>SGD steps in the epoch.</summary>
    public int Iterations { get; init; }
    /// <summary>Learning rate at the start of the epoch.</summary>
    public double LearningRate { get; init; }
    /// <summary>Mean training loss.</summary>
    public double TrainLoss { get; init; }
    /// <summary>Mean of each named loss term, e.g. "ce" and "kd" for BAKE.</summary>
    public IReadOnlyDictionary<string, double> TrainTerms { get; init; } = new Dictionary<string, double>();
    /// <summary>Training top-1 accuracy on the augmented batches, %.</summary>
    public double TrainTop1 { get; init; }
    /// <summary>Test metrics, when this epoch was evaluated.</summary>
    public EvaluationResult? Test { get; init; }
    /// <summary>Wall-clock seconds.</summary>
    public double Seconds { get; init; }

    internal static EpochMetrics From(Core.EpochSummary row, int epochs, IReadOnlyList<string> classes) => new()
    {
        Epoch = row.Epoch,
        Epochs = epochs,
        Iterations = row.Iterations,
        LearningRate = row.LearningRate,
        TrainLoss = row.TrainLoss,
        TrainTerms = row.TrainTerms.ToDictionary(t => t.Item1, t => t.Item2),
        TrainTop1 = row.TrainTop1,
        Test = FSharpOption<Core.EvalMetrics>.get_IsSome(row.Test) ? EvaluationResult.From(row.Test.Value, classes) : null,
        Seconds = row.Seconds,
    };
}

/// <summary>The outcome of <see cref="BakeTrainer.TrainAsync"/>.</summary>
public sealed record TrainingReport
{
    /// <summary>The run directory (config.yaml, log.jsonl, summary.csv, checkpoints).</summary>
    public string OutputDirectory { get; init; } = "";
    /// <summary>Every finished epoch.</summary>
    public IReadOnlyList<EpochMetrics> Epochs { get; init; } = Array.Empty<EpochMetrics>();
    /// <summary>Test metrics after the final epoch; <c>null</c> when the run was cancelled earlier.</summary>
    public EvaluationResult? Final { get; init; }
    /// <summary>The best evaluated epoch's test metrics (best-epoch selection on the test split, as the paper reports).</summary>
    public EvaluationResult? Best { get; init; }
    /// <summary>The 1-based epoch of <see cref="Best"/>, or 0.</summary>
    public int BestEpoch { get; init; }
    /// <summary>Class names in label order.</summary>
    public IReadOnlyList<string> Classes { get; init; } = Array.Empty<string>();
    /// <summary>True when cancellation stopped the run; a resumable checkpoint was written.</summary>
    public bool Cancelled { get; init; }
}

/// <summary>Trains a model with BAKE or a baseline. Build it from <see cref="TrainerOptions"/> or a YAML config;
/// call <see cref="TrainAsync"/> once.</summary>
public sealed class BakeTrainer : IDisposable
{
    private readonly Core.Config _config;
    private readonly Core.TrainingSettings _settings;
    private readonly bool _resume;
    private readonly CancellationTokenSource _disposal = new();
    private Thread? _thread;
    private int _started;
    private int _disposed;

    /// <summary>Creates a trainer from options (validated here).</summary>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentException">The configuration is invalid; the message lists every problem.</exception>
    public BakeTrainer(TrainerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var overrides = Microsoft.FSharp.Collections.ListModule.OfSeq(options.ToOverrides());
        try
        {
            _config = options.ConfigPath is null
                ? Core.Configs.DefaultJob(overrides)
                : Core.Configs.Load(options.ConfigPath, overrides);
            _settings = Core.Settings.OfConfigOrThrow(_config);
        }
        catch (Core.UsageException e)
        {
            throw Errors.Translate(e, nameof(options));
        }
        _resume = options.Resume;
    }

    /// <summary>The methods of the table: name and a one-line summary, in the order of help texts.</summary>
    public static IReadOnlyList<KeyValuePair<string, string>> Methods { get; } =
        Core.Methods.all.Select(m => new KeyValuePair<string, string>(m.Name, m.Summary)).ToList();

    /// <summary>Creates a trainer from a pycls-schema YAML config file.</summary>
    /// <exception cref="ArgumentException">The file is missing or invalid; every problem listed.</exception>
    public static BakeTrainer FromConfig(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return new BakeTrainer(new TrainerOptions { ConfigPath = path });
    }

    /// <summary>The resolved configuration as YAML (what config.yaml in the run directory will hold).</summary>
    public string ResolvedConfig => Core.Configs.ToYaml(_config);

    /// <summary>Trains on a dedicated thread (TorchSharp's dispose scopes are per thread) and reports each finished
    /// epoch. Cancellation stops after the current iteration and leaves a resumable checkpoint
    /// (<see cref="TrainerOptions.Resume"/>); the report then has <see cref="TrainingReport.Cancelled"/> set.</summary>
    /// <exception cref="InvalidOperationException">TrainAsync was already called on this trainer.</exception>
    /// <remarks>The task fails with an <see cref="ArgumentException"/> when the run directory holds another run or
    /// the data contradicts the configuration, and with a <c>Bake.Core.BakeException</c> when files cannot be read
    /// or written or the loss diverges (the message names the file, key or value).</remarks>
    /// <exception cref="ObjectDisposedException">The trainer was disposed.</exception>
    public Task<TrainingReport> TrainAsync(IProgress<EpochMetrics>? progress = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) == 1, this);
        if (Interlocked.Exchange(ref _started, 1) == 1)
            throw new InvalidOperationException("TrainAsync can be called once per BakeTrainer; create a new trainer (with Resume = true to continue).");
        var completion = new TaskCompletionSource<TrainingReport>(TaskCreationOptions.RunContinuationsAsynchronously);
        IReadOnlyList<string> classes = Array.Empty<string>();
        var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _disposal.Token);
        _thread = new Thread(() =>
        {
            try
            {
                var report = new Action<Core.TrainingEvent>(e =>
                {
                    if (e is Core.TrainingEvent.Started started)
                        classes = started.classes;
                    else if (e is Core.TrainingEvent.EpochFinished finished && progress is not null)
                        progress.Report(EpochMetrics.From(finished.Item, _settings.Epochs, classes));
                });
                var outcome = Core.Trainer.Run(_config, _settings, _resume, report, linked.Token);
                completion.SetResult(ToReport(outcome));
            }
            catch (Exception e)
            {
                completion.SetException(Errors.Translate(e, nameof(TrainerOptions)));
            }
            finally
            {
                linked.Dispose();
            }
        })
        { IsBackground = true, Name = "Bake training" };
        _thread.Start();
        return completion.Task;
    }

    private TrainingReport ToReport(Core.TrainingOutcome outcome)
    {
        var classes = outcome.Classes;
        var best = outcome.Best;
        return new TrainingReport
        {
            OutputDirectory = outcome.OutDir,
            Epochs = outcome.History.Select(r => EpochMetrics.From(r, _settings.Epochs, classes)).ToList(),
            Final = FSharpOption<Core.EvalMetrics>.get_IsSome(outcome.Final) ? EvaluationResult.From(outcome.Final.Value, classes) : null,
            Best = FSharpOption<Tuple<int, Core.EvalMetrics>>.get_IsSome(best) ? EvaluationResult.From(best.Value.Item2, classes) : null,
            BestEpoch = FSharpOption<Tuple<int, Core.EvalMetrics>>.get_IsSome(best) ? best.Value.Item1 : 0,
            Classes = classes,
            Cancelled = outcome.Cancelled,
        };
    }

    /// <summary>Stops a training run still in progress (after its current iteration, leaving a resumable
    /// checkpoint) and waits for it; the model and optimizer are freed when the run ends. Calling it again does nothing.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        _disposal.Cancel();
        _thread?.Join();
        _disposal.Dispose();
    }
}

/// <summary>Evaluates checkpoints.</summary>
public static class Evaluator
{
    /// <summary>Evaluates a checkpoint folder or a run directory (its last checkpoint: the final model) on the test split
    /// of <paramref name="dataset"/> (by default the one the run evaluated on: its TEST.DATASET, else its TRAIN.DATASET).</summary>
    /// <exception cref="ArgumentNullException"><paramref name="checkpoint"/> is null.</exception>
    /// <exception cref="ArgumentException">No dataset can be determined, or an unknown dataset name.</exception>
    /// <exception cref="Core.BakeException">No checkpoint there, or the data cannot be read; the message names the path.</exception>
    public static EvaluationResult Evaluate(string checkpoint, string? dataset = null)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        var result = Errors.Translate(() => Core.CheckpointEvaluation.EvaluateCheckpoint(checkpoint,
            dataset is null ? FSharpOption<string>.None : FSharpOption<string>.Some(dataset), 2, 256), nameof(dataset));
        return EvaluationResult.From(result.Item2, result.Item1.Classes);
    }
}
