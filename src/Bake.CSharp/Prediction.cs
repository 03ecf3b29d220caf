using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using Core = Bake.Core;

namespace Bake;

/// <summary>One class of a prediction.</summary>
/// <param name="Label">The class index (the label the model was trained with).</param>
/// <param name="ClassName">The class name the checkpoint records for the label.</param>
/// <param name="Probability">The softmax probability of the class, in [0, 1].</param>
public sealed record ClassPrediction(int Label, string ClassName, double Probability);

/// <summary>Classifies images with a trained checkpoint. Load it once with <see cref="Load"/>, call
/// <see cref="Predict(string, int)"/> as often as needed, dispose it to free the model.</summary>
/// <remarks>Images are brought to the checkpoint's channel count and size and normalised with its mean and std, as
/// in evaluation. The model runs on the CPU in eval mode. Not thread-safe: use one predictor per thread.</remarks>
public sealed class Predictor : IDisposable
{
    private readonly Core.Predictor _predictor;
    private bool _disposed;

    private Predictor(Core.Predictor predictor)
    {
        _predictor = predictor;
        Classes = predictor.Classes;
    }

    /// <summary>Loads a checkpoint folder, or a run directory's last checkpoint (its final model).</summary>
    /// <param name="checkpoint">A checkpoint folder (holding state.json) or a run directory.</param>
    /// <exception cref="ArgumentNullException"><paramref name="checkpoint"/> is null.</exception>
    /// <exception cref="Core.BakeException">No checkpoint there, or it cannot be read; the message names the path.</exception>
    public static Predictor Load(string checkpoint)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        return new Predictor(Errors.Translate(() => Core.Prediction.Load(checkpoint), nameof(checkpoint)));
    }

    /// <summary>The class names in label order.</summary>
    public IReadOnlyList<string> Classes { get; }

    /// <summary>The checkpoint folder the model was loaded from.</summary>
    public string Checkpoint => _predictor.Checkpoint;

    /// <summary>The top-k classes of an image file (JPEG or PNG), most probable first.</summary>
    /// <param name="imagePath">The image file.</param>
    /// <param name="topK">How many classes to return (at most the number of classes).</param>
    /// <exception cref="ArgumentNullException"><paramref name="imagePath"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="topK"/> is less than 1.</exception>
    /// <exception cref="Core.BakeException">The file is missing or cannot be decoded; the message names it.</exception>
    public IReadOnlyList<ClassPrediction> Predict(string imagePath, int topK = 5)
    {
        ArgumentNullException.ThrowIfNull(imagePath);
        ArgumentOutOfRangeException.ThrowIfLessThan(topK, 1);
        ObjectDisposedException.ThrowIf(_disposed, this);
        return ToList(Core.Prediction.PredictFiles(_predictor, new[] { imagePath }, topK)[0]);
    }

    /// <summary>The top-k classes of each image of a batch, most probable first.</summary>
    /// <param name="images">Pixels, N×C×H×W or one image C×H×W: uint8 in 0–255, or floating point in [0, 1] (not
    /// normalised). Any size; RGB or grayscale (converted to the model's channels). Not modified.</param>
    /// <param name="topK">How many classes to return per image (at most the number of classes).</param>
    /// <returns>One list per image, in batch order.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="images"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="topK"/> is less than 1.</exception>
    /// <exception cref="ArgumentException">The tensor is not an image batch, or its channels cannot be converted.</exception>
    public IReadOnlyList<IReadOnlyList<ClassPrediction>> Predict(torch.Tensor images, int topK = 5)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentOutOfRangeException.ThrowIfLessThan(topK, 1);
        ObjectDisposedException.ThrowIf(_disposed, this);
        return Core.Prediction.PredictPixels(_predictor, images, topK).Select(ToList).ToList();
    }

    private static IReadOnlyList<ClassPrediction> ToList(Core.ClassScore[] scores) =>
        scores.Select(s => new ClassPrediction(s.Label, s.ClassName, s.Probability)).ToList();

    /// <summary>Frees the model.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        ((IDisposable)_predictor).Dispose();
    }
}

/// <summary>The datasets Bake reads, for callers that need their images outside training.</summary>
public static class Datasets
{
    /// <summary>Writes one image of a dataset as a PNG file (lossless) and returns its class name.</summary>
    /// <param name="dataset">"embedded", "fashion-mnist", "mnist", "cifar10", "cifar100" or a dataset folder.</param>
    /// <param name="split">"train" or "test".</param>
    /// <param name="index">The image's index in the split.</param>
    /// <param name="path">The PNG file to write.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">An unknown split or dataset.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="index"/> is outside the split.</exception>
    /// <exception cref="Core.BakeException">The dataset cannot be read or the file cannot be written.</exception>
    public static string SaveImage(string dataset, string split, int index, string path)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        ArgumentNullException.ThrowIfNull(split);
        ArgumentNullException.ThrowIfNull(path);
        var data = Errors.Translate(() => Core.Data.Datasets.Load(dataset, Microsoft.FSharp.Core.FSharpOption<string>.None), nameof(dataset));
        try
        {
            var images = split switch
            {
                "train" => data.Train,
                "test" => data.Test,
                _ => throw new ArgumentException($"split '{split}' is unknown: expected train or test", nameof(split)),
            };
            ArgumentOutOfRangeException.ThrowIfNegative(index);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, images.Count);
            using var batch = images.Load(new[] { index });
            using var image = batch[0];
            Core.Data.ImageFolder.SavePng(path, image);
            return data.Classes[images.Labels[index]];
        }
        finally
        {
            (data.Train as IDisposable)?.Dispose();
            (data.Test as IDisposable)?.Dispose();
        }
    }
}
