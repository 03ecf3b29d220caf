// The reproduction study driver (issue: does BAKE help, where, and at what cost).
//
//   dotnet fsi scripts/reproduce.fsx list                 the studies and their runs
//   dotnet fsi scripts/reproduce.fsx run STUDY [STUDY…]   train and evaluate every run whose results are missing
//                                                          (STUDY/RUN: that run only, e.g. to start a long run first)
//   dotnet fsi scripts/reproduce.fsx evaluate STUDY [STUDY…]   only re-evaluate trained runs missing an evaluation
//   dotnet fsi scripts/reproduce.fsx report               regenerate docs/results.md and its figures from results/
//
// Each run is `bake train` then `bake eval --fgsm --corruption --calibrate`, executed by the `bake` program given in
// $BAKE (default: the Release build, src/Bake.Cli/bin/Release/net10.0/linux-x64/bake). Runs go to results/STUDY/RUN/;
// a run is complete when its summary.csv has every epoch and its robustness.json holds the study's every FGSM step size, so an interrupted study
// resumes where it stopped (an interrupted training resumes from its last checkpoint). Only config.yaml,
// summary.csv and robustness.json of each run are committed (see .gitignore); checkpoints stay local.
// Data: $FASHION_MNIST (default: the fetch cache, `bake data fetch fashion-mnist` or scripts/get-fashion-mnist.sh) and
// $CIFAR10 (a folder with train/<class>/*.jpg and test/<class>/*.jpg, e.g. CIFAR-10 exported as JPEG files
// (the binary release via `bake data fetch cifar10` works too) and $TINYIMAGENET32 (TinyImageNet-200 at 32×32,
// made by `bake data downsample`, see docs/tinyimagenet32.md).
// $START_BEFORE (a local time such as 17:00, or a date and time): `run` starts no run after it, so a driver in a
// session of bounded length ends after its current run instead of starting one that would be cut off (a cut-off run
// resumes from its last checkpoint, but checkpoints do not leave the machine).
#load "Bake.fsx" "report.fsx"

open System
open System.Diagnostics
open System.Globalization
open System.IO
open System.Text
open System.Text.Json.Nodes
open Bake.Core
open Bake.Core.Reporting

let root = Path.GetFullPath(Path.Combine(__SOURCE_DIRECTORY__, ".."))
let results = Path.Combine(root, "results")
let bake =
    match Environment.GetEnvironmentVariable "BAKE" with
    | null | "" -> Path.Combine(root, "src", "Bake.Cli", "bin", "Release", "net10.0", "linux-x64", "bake")
    | path -> path
let env name fallback = match Environment.GetEnvironmentVariable name with null | "" -> fallback | v -> v
let fashionMnist = env "FASHION_MNIST" "fashion-mnist"
let cifar10 = env "CIFAR10" "cifar10"
let tinyImageNet32 = env "TINYIMAGENET32" "tinyimagenet32"

/// One training run: a name, the overrides on top of the study's base and the seed.
type Run = { Study: string; Name: string; Method: string; Seed: int; Overrides: string list; Epochs: int }

/// The common setting of a study: data, model, budget, evaluation.
type Study =
    { Name: string
      Description: string
      Base: string list
      Epochs: int
      Batch: int
      /// FGSM step sizes of the robustness evaluation, in [0, 1] pixel units.
      Fgsm: float list
      Runs: Run list }

let seeds n = [ 1 .. n ]

/// One run of a study: `name` is its method (or ablation setting) and, with the seed, its directory under the study.
let studyRun (study: string) (name: string) (seed: int) (overrides: string list) (epochs: int) =
    { Study = study; Name = $"{name}-s{seed}"; Method = name; Seed = seed; Overrides = overrides @ [ $"RNG_SEED={seed}" ]; Epochs = epochs }

/// FGSM step sizes. With 200 classes and 10-30 % clean top-1 every model falls to about 1 % by ε = 0.01, which
/// compares nothing, so the TinyImageNet method studies add 0.002 and 0.005 (a half and 1.3 grey levels of an 8-bit
/// image) and keep the 10-class studies' three for comparison.
let tenClassFgsm = [ 0.01; 0.03; 0.1 ]
let manyClassFgsm = [ 0.002; 0.005 ] @ tenClassFgsm

/// Plain batches: no BAKE, no per-class sampler (CS-KD and DLB build their own pairs; the official protocol's vanilla).
let plainBatches = [ "TRAIN.USE_BAKE=False"; "TRAIN.INTRA_IMGS=0" ]

/// Plain training at BAKE (M = 1)'s iterations per epoch: vanilla and the baselines that train on plain batches, at
/// equal SGD steps.
let plainAtEqualSteps = plainBatches @ [ "METHOD.EQUAL_STEPS_M=1" ]

/// Methods compared at equal SGD steps and equal total batch N: every method runs BAKE (M = 1)'s iterations per
/// epoch; BAKE with M = 3 has twice as many iterations per epoch, so it runs half the epochs.
/// `omegas`: further ensembling weights ω for BAKE (M = 1), run at `otherSeeds` as "bake-m1-omega-ω" (the paper picks
/// ω from {0.5, 0.9} per dataset; 0.5 is the headline run).
let methodRuns (study: string) (epochs: int) (headlineSeeds: int) (otherSeeds: int) (omegas: float list) =
    let run = studyRun study
    [ for seed in seeds headlineSeeds do
          yield run "vanilla" seed plainAtEqualSteps epochs
          yield run "bake-m1" seed [ "TRAIN.USE_BAKE=True"; "TRAIN.INTRA_IMGS=1" ] epochs
      for seed in seeds otherSeeds do
          for omega in omegas do
              yield run (sprintf "bake-m1-omega-%g" omega) seed [ "TRAIN.USE_BAKE=True"; "TRAIN.INTRA_IMGS=1"; sprintf "TRAIN.OMEGA=%g" omega ] epochs
          yield run "bake-m3" seed [ "TRAIN.USE_BAKE=True"; "TRAIN.INTRA_IMGS=3"; $"OPTIM.MAX_EPOCH={epochs / 2}" ] (epochs / 2)
          yield run "label-smoothing" seed (plainAtEqualSteps @ [ "METHOD.NAME=label-smoothing" ]) epochs
          yield run "tfkd-reg" seed (plainAtEqualSteps @ [ "METHOD.NAME=tfkd-reg" ]) epochs
          yield run "cskd" seed (plainBatches @ [ "METHOD.NAME=cskd" ]) epochs
          // PS-KD trains on plain batches (at BAKE M = 1's steps); DLB's batches (N/2 repeated + N/2 new) already take as many.
          yield run "pskd" seed (plainAtEqualSteps @ [ "METHOD.NAME=pskd" ]) epochs
          yield run "dlb" seed (plainBatches @ [ "METHOD.NAME=dlb" ]) epochs
      // The official protocol, once: equal epochs, so BAKE (M = 1) takes twice the baseline's steps.
      yield run "vanilla-official-protocol" 1 plainBatches epochs ]

/// Ablations at 2 seeds. ω = 0.5, τ = 4, λ = 1, M = 1, closed form is exactly the bake-m1 run of the methods study
/// with the same base, so those points are taken from there (the report reads them as the reference row).
let ablationRuns (study: string) (epochs: int) =
    let run = studyRun study
    let bake = [ "TRAIN.USE_BAKE=True"; "TRAIN.INTRA_IMGS=1" ]
    [ for seed in seeds 2 do
          for omega in [ 0.0; 0.1; 0.3; 0.7; 0.9 ] do
              yield run (sprintf "omega-%g" omega) seed (bake @ [ sprintf "TRAIN.OMEGA=%g" omega ]) epochs
      for seed in seeds 2 do
          // BAKE without the per-class sampler (M = 0: plain batches, at BAKE M = 1's steps).
          yield run "bake-m0" seed [ "TRAIN.USE_BAKE=True"; "TRAIN.INTRA_IMGS=0"; "METHOD.EQUAL_STEPS_M=1" ] epochs
          yield run "one-step" seed (bake @ [ "METHOD.PROPAGATION=one-step" ]) epochs
          // Vanilla with the per-class sampler (paper Table 9), at the same steps as the methods study.
          yield run "vanilla-m1" seed [ "TRAIN.USE_BAKE=False"; "TRAIN.INTRA_IMGS=1" ] epochs
          yield run "vanilla-m3" seed [ "TRAIN.USE_BAKE=False"; "TRAIN.INTRA_IMGS=3"; $"OPTIM.MAX_EPOCH={epochs / 2}" ] (epochs / 2)
      for seed in seeds 2 do
          for tau in [ 1.0; 2.0; 8.0 ] do
              yield run (sprintf "tau-%g" tau) seed (bake @ [ sprintf "TRAIN.TEMP=%g" tau ]) epochs
          for lambda in [ 0.5; 2.0; 4.0 ] do
              yield run (sprintf "lambda-%g" lambda) seed (bake @ [ sprintf "TRAIN.LAMBDA=%g" lambda ]) epochs ]

let fmnistBase perClass epochs batch =
    [ "MODEL.TYPE=cnn"; $"TRAIN.DATASET={fashionMnist}"; $"TRAIN.PER_CLASS={perClass}"; "TRAIN.HOLDOUT_PER_CLASS=100"
      $"TRAIN.BATCH_SIZE={batch}"; $"OPTIM.MAX_EPOCH={epochs}"; "OPTIM.BASE_LR=0.05"; "OPTIM.WEIGHT_DECAY=5e-4"
      "TRAIN.EVAL_PERIOD=5"; "TEST.BATCH_SIZE=1000"; "LOG_PERIOD=50"; "TRAIN.CHECKPOINT_PERIOD=5" ]

/// CIFAR-10's data-limited regime trains without augmentation: with crop + flip the small CNN reached only 81 %
/// training top-1 after 1,890 steps (a pilot run), so it would not be the regime where vanilla fits its training set.
let cifarBase perClass epochs batch augment =
    [ "MODEL.TYPE=cnn"; $"TRAIN.DATASET={cifar10}"; $"TRAIN.PER_CLASS={perClass}"; "TRAIN.HOLDOUT_PER_CLASS=100"; $"DATA.AUGMENT={augment}"
      $"TRAIN.BATCH_SIZE={batch}"; $"OPTIM.MAX_EPOCH={epochs}"; "OPTIM.BASE_LR=0.05"; "OPTIM.WEIGHT_DECAY=5e-4"
      "TRAIN.EVAL_PERIOD=5"; "TEST.BATCH_SIZE=1000"; "LOG_PERIOD=50"; "TRAIN.CHECKPOINT_PERIOD=5" ]

/// TinyImageNet at 32×32 (200 classes): the paper's optimiser for it (SGD, learning rate 0.1 at batch 128, momentum
/// 0.9) with weight decay 5e-4 and a cosine schedule over the run's budget; 50 images per class are held out of
/// training for temperature calibration, and the 10,000 validation images are the test set. Evaluated every epoch so
/// that convergence (test top-1 flat over the last fifth) can be read off the curves.
let tinyBaseHolding perClass holdout epochs augment =
    [ $"TRAIN.DATASET={tinyImageNet32}"; $"TRAIN.PER_CLASS={perClass}"; $"TRAIN.HOLDOUT_PER_CLASS={holdout}"; $"DATA.AUGMENT={augment}"
      "TRAIN.BATCH_SIZE=128"; $"OPTIM.MAX_EPOCH={epochs}"; "OPTIM.BASE_LR=0.1"; "OPTIM.WEIGHT_DECAY=5e-4"
      "TRAIN.EVAL_PERIOD=1"; "TEST.BATCH_SIZE=500"; "LOG_PERIOD=50"; "TRAIN.CHECKPOINT_PERIOD=1" ]
let tinyBase perClass epochs augment = tinyBaseHolding perClass 50 epochs augment

/// The TinyImageNet studies' architecture, chosen by the pilot (docs/results.md, tin32-pilot): the only candidate that
/// fits its 20,000 training images within the ~30 min budget (99.2 % training top-1 in its last epoch without
/// augmentation), and the cheapest step; the second architecture is resnet20 (0.28M parameters against 11.3M).
let tinyModel = "resnet18"
let tinySecondModel = "resnet20"
/// The full regime's budget: 4 epochs at BAKE (M = 1)'s steps over 98,000 images (6,124 steps, 66–69 min per run on one core two at a time, up to twice that on a busier machine).
let tinyFullEpochs = 4
/// The baselines the second architecture's study chooses its third method from.
let tinyBaselines = [ "label-smoothing"; "tfkd-reg"; "cskd"; "pskd"; "dlb" ]
/// The methods of a study ranked by mean final test top-1 over seeds 1..n, best first, once every one has all n
/// finished; None before that.
let rankByMeanFinal (study: string) (seedCount: int) (methods: string list) =
    let finals name =
        [ for seed in 1..seedCount -> Report.read (Path.Combine(results, study, $"{name}-s{seed}")) name name |> Option.map (fun r -> r.FinalTop1) ]
    let all = methods |> List.map (fun name -> name, finals name)
    if all |> List.forall (snd >> List.forall Option.isSome) then
        Some(all |> List.sortByDescending (snd >> List.averageBy Option.get) |> List.map fst)
    else None
/// The baseline beside vanilla and BAKE with the second architecture: the best final test top-1 (mean over its three
/// seeds) among tin32-limited's baselines, once every one of them has finished all three; until then the second
/// architecture's study runs vanilla and BAKE only (a later `run` adds the baseline's runs).
let tinyBestBaseline = rankByMeanFinal "tin32-limited" 3 tinyBaselines |> Option.map List.head
/// The full regime gives 3 seeds to vanilla and BAKE (M = 1) and 2 to the rest; the best two methods (by mean final
/// test top-1 over seeds 1-2, vanilla aside) get a third seed once every method has its first two: a later `run` adds
/// those runs (none when BAKE is one of the two and the other already has three).
let tinyFullRuns =
    let twoSeeds = methodRuns "tin32-full" tinyFullEpochs 3 2 [ 0.9 ]
    let candidates = twoSeeds |> List.map (fun r -> r.Method) |> List.distinct |> List.filter (fun m -> not (m.StartsWith "vanilla"))
    let bestTwo = rankByMeanFinal "tin32-full" 2 candidates |> Option.map (List.truncate 2) |> Option.defaultValue []
    bestTwo,
    methodRuns "tin32-full" tinyFullEpochs 3 3 [ 0.9 ]
    |> List.filter (fun r -> List.contains r.Method bestTwo || twoSeeds |> List.exists (fun t -> t.Name = r.Name))
/// Whether the full regime's budget lets vanilla converge: with one evaluation per epoch its 4 epochs cannot show a
/// flat last fifth, so one vanilla run at twice the epochs (and steps), after every other run, says how much a longer
/// schedule would buy.
let tinyFullConvergenceRun =
    let epochs = 2 * tinyFullEpochs
    studyRun "tin32-full" $"vanilla-{epochs}-epochs" 1 (plainAtEqualSteps @ [ $"OPTIM.MAX_EPOCH={epochs}" ]) epochs
/// Runs ordered by seed (stable), so that every method has a first seed before any has a fourth: a study spread over
/// several sessions is comparable at every stage.
let bySeed (runs: Run list) = runs |> List.sortBy (fun r -> r.Seed)

/// The architecture pilot: vanilla, one seed, the data-limited regime (100 images per class), at BAKE (M = 1)'s
/// steps per epoch like every study run. One step of 128 images on one core (`bake time --classes 200`, idle
/// machine) costs 0.43 s for resnet18, 0.61 s for resnet20, 0.68 s for resnet32, 1.34 s for resnet56 and 1.49 s for
/// resnet8x4 (resnet32x4: ~14 s, out of reach); so the first three get 8 epochs (2,496 steps, 18-28 min) and the two
/// slow ones the 4 epochs (1,248 steps) that fit the same ~30 min. With crop + flip (the first two runs) neither
/// resnet18 nor resnet20 came near fitting its training set in that budget (31 % and 25 % training top-1, 16.7 % and
/// 17.4 % test top-1), so, as for CIFAR-10's data-limited regime, the pilot proper trains without augmentation.
let pilotRuns =
    let run model epochs augment suffix =
        { Study = "tin32-pilot"; Name = $"{model}{suffix}-s1"; Method = model + suffix; Seed = 1; Epochs = epochs
          Overrides = [ $"MODEL.TYPE={model}" ] @ plainAtEqualSteps @ [ $"OPTIM.MAX_EPOCH={epochs}"; $"DATA.AUGMENT={augment}"; "RNG_SEED=1" ] }
    [ yield run "resnet18" 8 "auto" "-crop-flip"
      yield run "resnet20" 8 "auto" "-crop-flip"
      for model, epochs in [ "resnet18", 8; "resnet20", 8; "resnet32", 8; "resnet56", 4; "resnet8x4", 4 ] do
          yield run model epochs "none" "" ]

let studies : Study list =
    [ { Name = "fmnist-limited"
        Description = "Fashion-MNIST, data-limited: 100 training images per class (1,000), crop + flip, full 10,000-image test set, small CNN, 30 epochs; one run at a time on both cores"
        Base = fmnistBase 100 30 64; Epochs = 30; Batch = 64; Fgsm = tenClassFgsm; Runs = methodRuns "fmnist-limited" 30 5 3 [] }
      { Name = "fmnist-ablations"
        Description = "Ablations in the Fashion-MNIST data-limited regime (2 seeds each); one run at a time on both cores"
        Base = fmnistBase 100 30 64; Epochs = 30; Batch = 64; Fgsm = tenClassFgsm; Runs = ablationRuns "fmnist-ablations" 30 }
      { Name = "fmnist-larger"
        Description = "Fashion-MNIST, larger data: 1,000 training images per class (10,000), full test set, small CNN, 10 epochs; each run on one core (OMP_NUM_THREADS=1), two runs at a time"
        Base = fmnistBase 1000 10 128; Epochs = 10; Batch = 128; Fgsm = tenClassFgsm; Runs = methodRuns "fmnist-larger" 10 5 3 [] }
      { Name = "cifar10-limited"
        Description = "CIFAR-10 (JPEG), data-limited: 200 training images per class (2,000), no augmentation, full 10,000-image test set, small CNN, 30 epochs; each run on one core (OMP_NUM_THREADS=1), two runs at a time"
        Base = cifarBase 200 30 64 "none"; Epochs = 30; Batch = 64; Fgsm = tenClassFgsm; Runs = methodRuns "cifar10-limited" 30 5 3 [] }
      { Name = "cifar10-larger"
        Description = "CIFAR-10 (JPEG), larger data: 1,000 training images per class (10,000), crop + flip, full test set, small CNN, 8 epochs; each run on one core (OMP_NUM_THREADS=1), two runs at a time"
        Base = cifarBase 1000 8 128 "auto"; Epochs = 8; Batch = 128; Fgsm = tenClassFgsm; Runs = methodRuns "cifar10-larger" 8 5 3 [] }
      { Name = "tin32-pilot"
        Description = "TinyImageNet-32 architecture pilot: vanilla, seed 1, 100 training images per class (20,000), no augmentation (two runs with crop + flip), the full 10,000-image validation set as test set, 8 epochs at BAKE (M = 1)'s steps (4 for the two slowest models); each run on one core (OMP_NUM_THREADS=1), two runs at a time"
        Base = tinyBase 100 8 "none"; Epochs = 8; Batch = 128; Fgsm = tenClassFgsm; Runs = pilotRuns }
      { Name = "tin32-limited"
        Description = $"TinyImageNet-32, data-limited: 100 training images per class (20,000; 50 more per class held out for calibration), no augmentation, the 10,000 validation images as test set, {tinyModel} (the pilot's choice), 8 epochs; each run on one core (OMP_NUM_THREADS=1), two runs at a time"
        Base = tinyBase 100 8 "none" @ [ $"MODEL.TYPE={tinyModel}" ]; Epochs = 8; Batch = 128; Fgsm = manyClassFgsm
        Runs = methodRuns "tin32-limited" 8 5 3 [ 0.9 ] |> bySeed }
      { Name = "tin32-full"
        Description =
            let third =
                match fst tinyFullRuns with
                | [] -> "the best two methods get a third seed once every method has two (not yet)"
                | best -> sprintf "3 seeds for vanilla, BAKE (M = 1) and the best two methods by mean final top-1 over two seeds (%s), 2 for the rest" (String.concat ", " best)
            $"TinyImageNet-32, full: every training image but 10 per class held out for calibration (98,000), crop + flip, the 10,000 validation images as test set, {tinyModel}, {tinyFullEpochs} epochs; {third}; one vanilla run at twice the epochs checks convergence; each run on one core (OMP_NUM_THREADS=1), two runs at a time"
        Base = tinyBaseHolding 0 10 tinyFullEpochs "auto" @ [ $"MODEL.TYPE={tinyModel}" ]; Epochs = tinyFullEpochs; Batch = 128; Fgsm = manyClassFgsm
        Runs = (snd tinyFullRuns |> bySeed) @ [ tinyFullConvergenceRun ] }
      { Name = "tin32-limited-" + tinySecondModel
        Description =
            let baseline =
                match tinyBestBaseline with
                | Some name -> $"the best baseline of tin32-limited ({name}, by mean final top-1 over 3 seeds)"
                | None -> "the best baseline of tin32-limited (chosen when all of its baselines have 3 seeds; not yet)"
            $"TinyImageNet-32, data-limited as tin32-limited, with {tinySecondModel} (another capacity): vanilla, BAKE and {baseline}, 3 seeds"
        Base = tinyBase 100 8 "none" @ [ $"MODEL.TYPE={tinySecondModel}" ]; Epochs = 8; Batch = 128; Fgsm = manyClassFgsm
        Runs =
            methodRuns ("tin32-limited-" + tinySecondModel) 8 3 3 []
            |> List.filter (fun r -> r.Method = "vanilla" && not (r.Name.Contains "official") || r.Method = "bake-m1" || Some r.Method = tinyBestBaseline)
            |> bySeed } ]

let runDir (run: Run) = Path.Combine(results, run.Study, run.Name)

let completedEpochs (dir: string) =
    let summary = Path.Combine(dir, "summary.csv")
    if File.Exists summary then File.ReadAllLines(summary).Length - 1 else 0

/// The FGSM step sizes a run's robustness.json holds (none without the file).
let evaluatedFgsm (run: Run) =
    let path = Path.Combine(runDir run, "robustness.json")
    if not (File.Exists path) then []
    else
        let robustness = JsonNode.Parse(File.ReadAllText path)
        [ for n in robustness["fgsm"].AsArray() -> n["epsilon"].GetValue<float>() ]

/// Trained for every epoch and evaluated at every FGSM step size of the study (a study that gains step sizes
/// re-evaluates its finished runs from their last checkpoint, without training them again).
let isComplete (study: Study) (run: Run) =
    completedEpochs (runDir run) >= run.Epochs
    && (let evaluated = evaluatedFgsm run in study.Fgsm |> List.forall (fun e -> evaluated |> List.exists (Report.sameStep e)))

/// Runs `bake` with the arguments and returns its exit code.
let runBake (arguments: string list) =
    let info = ProcessStartInfo(bake, UseShellExecute = false)
    for a in arguments do info.ArgumentList.Add a
    use proc = Process.Start info
    proc.WaitForExit()
    proc.ExitCode

let exec (arguments: string list) =
    let code = runBake arguments
    if code <> 0 then failwithf "bake %s exited with %d" (String.concat " " arguments) code

/// A training that fails at run time (exit 1, or killed by a signal: the process is gone, its checkpoints are not) is
/// resumed from its last checkpoint, up to three more times; a usage error (exit 2) is not retried.
let train (dir: string) (arguments: string list) =
    let rec attempt (n: int) =
        let resume = File.Exists(Path.Combine(dir, "checkpoints", "last.json"))
        let full = [ "train"; "--out"; dir ] @ arguments @ (if resume then [ "--resume" ] else [])
        match runBake full with
        | 0 -> ()
        | code when code <> 2 && n < 3 ->
            eprintfn "bake %s exited with %d; resuming from the last checkpoint (retry %d of 3)" (String.concat " " full) code (n + 1)
            attempt (n + 1)
        | code -> failwithf "bake %s exited with %d" (String.concat " " full) code
    attempt 0

let execute (study: Study) (run: Run) =
    let dir = runDir run
    let clock = Stopwatch.StartNew()
    let alreadyTrained = completedEpochs dir
    if alreadyTrained < run.Epochs then
        train dir (study.Base @ run.Overrides |> List.collect (fun o -> [ "--set"; o ]))
    exec [ "eval"; "--checkpoint"; dir
           "--fgsm"; study.Fgsm |> List.map (fun e -> e.ToString(CultureInfo.InvariantCulture)) |> String.concat ","; "--corruption"; "gaussian-noise,gaussian-blur"; "--calibrate"; "--batch-size"; "1000"
           "--out"; Path.Combine(dir, "robustness.json") ]
    // One line per driver invocation: a run resumed after a stop has several, each saying what that invocation did.
    let work = if alreadyTrained < run.Epochs then $"epochs {alreadyTrained + 1}-{run.Epochs} + robustness" else "robustness only"
    File.AppendAllText(Path.Combine(results, run.Study, "wall-time.tsv"), $"{run.Name}\t{clock.Elapsed.TotalSeconds:F0}\t{work}\n")

/// Several drivers may run at once (e.g. one per core with OMP_NUM_THREADS=1): each run is claimed with a lock file
/// holding the driver's process id; a lock whose process has exited is stale and taken over.
let tryLock (run: Run) =
    let dir = runDir run
    Directory.CreateDirectory dir |> ignore
    let lockFile = Path.Combine(dir, ".driver.lock")
    let alive (pid: int) = try not (Process.GetProcessById(pid).HasExited) with _ -> false
    let claim () =
        try
            use stream = new FileStream(lockFile, FileMode.CreateNew, FileAccess.Write)
            let bytes = Encoding.ASCII.GetBytes(string Environment.ProcessId)
            stream.Write(bytes, 0, bytes.Length)
            true
        with :? IOException -> false
    if claim () then Some lockFile
    else
        match Int32.TryParse((try File.ReadAllText lockFile with _ -> "").Trim()) with
        | true, pid when alive pid -> None
        | _ ->
            File.Delete lockFile
            if claim () then Some lockFile else None

/// The time after which `run` starts no further run ($START_BEFORE; none when unset). Read when `run` or `evaluate`
/// starts, so that `list` and `report` neither warn about it nor refuse a malformed one.
let startBefore = lazy (
    match env "START_BEFORE" "" with
    | "" -> None
    | text ->
        match DateTime.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeLocal) with
        | true, time ->
            // A bare time means today's: say so when it has passed, since after midnight the user likely meant tomorrow's.
            if time < DateTime.Now then
                eprintfn "START_BEFORE=%s is %s, which has passed: no run will start (for another day give a date and time, e.g. %s)"
                    text (time.ToString "yyyy-MM-dd HH:mm") (time.AddDays(1.0).ToString "yyyy-MM-ddTHH:mm")
            Some time
        | _ ->
            eprintfn "START_BEFORE=%s: expected a local time such as 17:00 or a date and time such as 2026-12-03T09:30" text
            exit 2)

/// The study and runs a command-line selector names: a study's name (all of its runs) or STUDY/RUN (that one run).
/// An unknown one is a usage error (exit 2); every selector is resolved before any run starts, so a typo in the
/// last one does not surface hours later.
let resolveSelector (selector: string) : Study * Run list =
    let names (items: string list) = String.concat ", " items
    let name, runName =
        match selector.Split('/', 2) with
        | [| study; run |] -> study, Some run
        | _ -> selector, None
    match studies |> List.tryFind (fun s -> s.Name = name) with
    | None ->
        eprintfn "unknown study %s; known: %s" name (studies |> List.map (fun s -> s.Name) |> names)
        exit 2
    | Some study ->
        match runName with
        | None -> study, study.Runs
        | Some r ->
            match study.Runs |> List.filter (fun x -> x.Name = r) with
            | [] ->
                eprintfn "study %s has no run %s; its runs: %s" study.Name r (study.Runs |> List.map (fun x -> x.Name) |> names)
                exit 2
            | one -> study, one

/// Runs the missing ones of a study's `runs`; `evaluateOnly` re-evaluates only the runs whose training is complete
/// (after a study gained an evaluation, e.g. FGSM step sizes) and trains none.
let runStudy (evaluateOnly: bool) (study: Study, runs: Run list) =
    Directory.CreateDirectory(Path.Combine(results, study.Name)) |> ignore
    for run in runs do
        if isComplete study run then printfn "[%s] %s: done" study.Name run.Name
        elif evaluateOnly && completedEpochs (runDir run) < run.Epochs then printfn "[%s] %s: not trained yet" study.Name run.Name
        elif startBefore.Force() |> Option.exists (fun t -> DateTime.Now > t) then
            printfn "[%s] %s: not started (START_BEFORE=%s has passed)" study.Name run.Name (env "START_BEFORE" "")
        else
            match tryLock run with
            | None -> printfn "[%s] %s: taken by another driver" study.Name run.Name
            | Some lockFile ->
                try
                    // Another driver may have finished it between the check above and the lock.
                    if isComplete study run then printfn "[%s] %s: done" study.Name run.Name
                    else
                        printfn "[%s] %s: running (%s)" study.Name run.Name (DateTime.Now.ToString "HH:mm")
                        execute study run
                finally File.Delete lockFile

match fsi.CommandLineArgs |> Array.toList |> List.tail with
| [ "list" ] ->
    for s in studies do
        printfn "%s (%d runs): %s" s.Name s.Runs.Length s.Description
        for r in s.Runs do printfn "    %-36s %s" r.Name (if isComplete s r then "done" else "missing")
| ("run" | "evaluate" as command) :: names when not names.IsEmpty ->
    let targets = List.map resolveSelector names
    startBefore.Force() |> ignore
    for target in targets do runStudy (command = "evaluate") target
| [ "report" ] -> Report.write root results (studies |> List.map (fun s -> s.Name, s.Description, s.Runs |> List.map (fun r -> r.Name, r.Method, r.Epochs)))
| _ ->
    eprintfn "usage: dotnet fsi scripts/reproduce.fsx list | run STUDY… | evaluate STUDY… | report"
    exit 2
