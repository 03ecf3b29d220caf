namespace Bake.Core

open System
open Bake.Core.Data

/// <summary>SGD settings.</summary>
[<NoComparison>]
type OptimizerSettings =
    { Momentum: float
      Dampening: float
      Nesterov: bool
      WeightDecay: float
      /// <summary>Weight decay for BatchNorm parameters, when different from WeightDecay.</summary>
      BatchNormDecay: float option
      /// <summary>Whether bias parameters get weight decay.</summary>
      BiasDecay: bool }

/// <summary>Batch-level CutMix settings.</summary>
[<NoComparison>]
type CutMixSettings = { Enabled: bool; Beta: float; Probability: float; OffEpochs: int }

/// <summary>Everything a training run needs, typed and validated, derived from a <see cref="T:Bake.Core.Config"/>.</summary>
[<NoComparison; NoEquality>]
type TrainingSettings =
    { Seed: int
      OutDir: string
      Device: string
      /// <summary>A model registry name (pycls types already mapped).</summary>
      Model: string
      /// <summary>Classes; 0 = from the dataset.</summary>
      Classes: int
      Dataset: string
      TestDataset: string
      /// <summary>DATA.FORMAT: None to detect the layout.</summary>
      Format: DataFormat option
      Augment: bool
      PerClass: int
      /// <summary>Training images per class held out of training (for calibration).</summary>
      HoldoutPerClass: int
      ImageSize: int
      TestImageSize: int
      /// <summary>Total images per training batch, N.</summary>
      BatchSize: int
      /// <summary>M: same-class images per anchor (BAKE) — the per-class sampler is used when M &gt; 0.</summary>
      IntraImages: int
      /// <summary>The method, configured from the table entry METHOD.NAME (or TRAIN.USE_BAKE) names.</summary>
      Method: ConfiguredMethod
      /// <summary>When &gt; 0, plain shuffled batches run as many iterations per epoch as BAKE with this M
      /// (ceil(n / (N / (M + 1)))), for comparisons at equal SGD steps.</summary>
      EqualStepsM: int
      Optimizer: OptimizerSettings
      Schedule: Schedule
      Epochs: int
      EvalPeriod: int
      CheckpointPeriod: int
      TestBatchSize: int
      Workers: int
      LogPeriod: int
      CutMix: CutMixSettings
      Weights: string
      /// <summary>Continue the run in OutDir from its last checkpoint when there is one (pycls TRAIN.AUTO_RESUME).</summary>
      AutoResume: bool
      BatchNormEpsilon: float
      BatchNormMomentum: float
      /// <summary>Write TensorBoard event files into OUT_DIR/tb (LOGGING.TENSORBOARD).</summary>
      TensorBoard: bool
      /// <summary>Channels-last images, weights and buffers (TRAIN.CHANNELS_LAST).</summary>
      ChannelsLast: bool }

    /// <summary>N̂, the new images per batch: N / (M + 1) anchors with the per-class sampler (N with plain
    /// batches), N / 2 for CS-KD's anchors and DLB's new half.</summary>
    member this.Anchors =
        match this.Method.Sampler with
        | Sampler.ClassPairs | Sampler.RepeatLastHalf -> this.BatchSize / 2
        | Sampler.Standard -> this.BatchSize / (this.IntraImages + 1)

    /// <summary>The training images the run reads, as a selection of the training labels (its training images and
    /// held-out images, <see cref="M:Bake.Core.Data.Split.PerClass"/>), or None when it reads them all: passed to
    /// <see cref="M:Bake.Core.Data.Datasets.LoadIn"/> so that only those are held in memory.</summary>
    member this.TrainingSelection : (int[] -> int[]) option =
        if this.PerClass > 0 || this.HoldoutPerClass > 0 then
            let perClass, holdout, seed = this.PerClass, this.HoldoutPerClass, this.Seed
            Some(fun labels ->
                let training, held = Split.perClass (labels, perClass, holdout, seed)
                Array.append training held |> Array.sort)
        else None

    /// <summary>The dataset (and its format) whose test split the run evaluates on: TEST.DATASET when it names
    /// another dataset (its format detected), else the training dataset in DATA.FORMAT.</summary>
    member this.TestData =
        if String.IsNullOrWhiteSpace this.TestDataset || this.TestDataset = this.Dataset then this.Dataset, this.Format
        else this.TestDataset, None

    /// <summary>The training and test transforms and the input size. The dataset's presets (native size up to 64 px,
    /// else 224 crops from resizes to 256) unless TRAIN.IM_SIZE / TEST.IM_SIZE ask for another size: then training uses
    /// a random-resized crop to IM_SIZE (scale 0.08–1, the official TinyImageNet and ImageNet recipes) and testing a
    /// resize to TEST.IM_SIZE (default IM_SIZE, or IM_SIZE·256/224 for large images) and a center crop of IM_SIZE.</summary>
    member this.Transforms(dataset: Dataset) : TransformSpec * TransformSpec * int =
        let side = min dataset.ImageShape[1] dataset.ImageShape[2]
        let small = side <= 64
        let native = if small then side else 224
        let size = if this.ImageSize > 0 then this.ImageSize else native
        let training = if this.Augment then Transforms.forTraining dataset else Transforms.forEvaluation dataset
        let evaluation = Transforms.forEvaluation dataset
        let train =
            if size = native then training
            elif this.Augment then
                { training with RandomCrop = None; ResizeCenterCrop = None
                                RandomResizedCrop = Some { Size = size; Scale = (0.08, 1.0); Ratio = (3.0 / 4.0, 4.0 / 3.0) } }
            else { evaluation with ResizeCenterCrop = Some { Resize = size; Crop = size } }
        let testResize =
            if this.TestImageSize > 0 then this.TestImageSize
            elif small then size
            else size * 256 / 224
        let test =
            if size = native && this.TestImageSize = 0 then evaluation
            else { evaluation with ResizeCenterCrop = Some { Resize = testResize; Crop = size } }
        train, test, size

/// <summary>From a resolved config to validated <see cref="T:Bake.Core.TrainingSettings"/>.</summary>
[<RequireQualifiedAccess>]
module Settings =

    /// <summary>Maps a pycls AnyNet description onto a Bake ResNet/ResNeXt name, or explains why it cannot.</summary>
    let private anynet (config: Config) : Result<string, string> =
        let stem = Keys.ANYNET.STEM_TYPE.Of config
        let block = Keys.ANYNET.BLOCK_TYPE.Of config
        let depths = Keys.ANYNET.DEPTHS.Of config
        let widths = Keys.ANYNET.WIDTHS.Of config
        let strides = Keys.ANYNET.STRIDES.Of config
        let bots = Keys.ANYNET.BOT_MULS.Of config
        let groups = Keys.ANYNET.GROUP_WS.Of config
        let depthName =
            match depths with
            | [ 3; 4; 6; 3 ] -> Some "50"
            | [ 3; 4; 23; 3 ] -> Some "101"
            | [ 3; 8; 36; 3 ] -> Some "152"
            | _ -> None
        if stem <> "res_stem_in" || block <> "res_bottleneck_block" then
            Error $"MODEL.TYPE anynet with ANYNET.STEM_TYPE {stem} and ANYNET.BLOCK_TYPE {block} is not supported: Bake maps only the ResNet/ResNeXt family (res_stem_in + res_bottleneck_block)"
        elif Keys.ANYNET.SE_ON.Of config then
            Error "MODEL.TYPE anynet with ANYNET.SE_ON True is not supported (no SE ResNets in Bake)"
        elif widths <> [ 256; 512; 1024; 2048 ] || strides <> [ 1; 2; 2; 2 ] || Keys.ANYNET.STEM_W.Of config <> 64 then
            Error $"MODEL.TYPE anynet: only the standard ResNet widths [256, 512, 1024, 2048], strides [1, 2, 2, 2] and STEM_W 64 map onto Bake's models (got WIDTHS {widths}, STRIDES {strides})"
        else
            match depthName with
            | None -> Error $"MODEL.TYPE anynet: ANYNET.DEPTHS {depths} is not a ResNet-50/101/152 layout ([3, 4, 6, 3], [3, 4, 23, 3], [3, 8, 36, 3])"
            | Some depth ->
                let plainResNet = bots = List.replicate 4 0.25 && groups = (widths |> List.map (fun w -> w / 4))
                let resnext32x4d = bots = List.replicate 4 0.5 && groups = [ 4; 8; 16; 32 ]
                if plainResNet then Ok("resnet" + depth)
                elif resnext32x4d then Ok("resnext" + depth + "-32x4d")
                else Error $"MODEL.TYPE anynet: BOT_MULS {bots} with GROUP_WS {groups} is neither a ResNet (0.25, group width = width/4) nor a ResNeXt 32×4d (0.5, [4, 8, 16, 32])"

    /// <summary>Maps MODEL.TYPE (a Bake name or a pycls type) to a Bake model registry name.</summary>
    [<CompiledName("ModelName")>]
    let modelName (config: Config) : Result<string, string> =
        match (Keys.MODEL.TYPE.Of config).ToLowerInvariant() with
        | "anynet" -> anynet config
        | "effnet" ->
            let b0 =
                Keys.EN.DEPTHS.Of config = [ 1; 2; 2; 3; 3; 4; 1 ]
                && Keys.EN.WIDTHS.Of config = [ 16; 24; 40; 80; 112; 192; 320 ]
                && Keys.EN.KERNELS.Of config = [ 3; 3; 5; 3; 5; 5; 3 ]
                && Keys.EN.STRIDES.Of config = [ 1; 2; 2; 2; 1; 2; 1 ]
                && Keys.EN.STEM_W.Of config = 32 && Keys.EN.HEAD_W.Of config = 1280
                && Keys.EN.EXP_RATIOS.Of config = [ 1.0; 6.0; 6.0; 6.0; 6.0; 6.0; 6.0 ]
                && Keys.EN.SE_R.Of config = 0.25
            // Bake's EfficientNet-B0 is torchvision's, with its fixed dropout 0.2 and stochastic depth 0.2: pycls
            // values other than its defaults (0, 0) cannot be honoured, so they are refused rather than ignored.
            let regularisation = Keys.EN.DC_RATIO.Of config = 0.0 && Keys.EN.DROPOUT_RATIO.Of config = 0.0
            if not b0 then
                Error "MODEL.TYPE effnet: only EfficientNet-B0 (EN.DEPTHS [1, 2, 2, 3, 3, 4, 1], WIDTHS [16, 24, 40, 80, 112, 192, 320], EXP_RATIOS [1, 6, …], SE_R 0.25, …) is implemented"
            elif not regularisation then
                Error "MODEL.TYPE effnet: EN.DC_RATIO and EN.DROPOUT_RATIO are not configurable (Bake's EfficientNet-B0 uses torchvision's dropout 0.2 and stochastic depth 0.2); leave them at 0"
            else Ok "efficientnet-b0"
        | "mobilenetv2" -> Ok "mobilenetv2"
        | "resnest" -> Error "MODEL.TYPE resnest: ResNeSt is not implemented in Bake (the official BAKE-S-50/101 configs need it); use a ResNet or ResNeXt config"
        | name -> Ok name

    /// <summary>The method a config asks for: METHOD.NAME, else pycls's TRAIN.USE_BAKE (bake or vanilla); a
    /// contradiction between the two is a problem.</summary>
    let private chosenMethod (config: Config) : Result<MethodSpec, string> =
        let useBake = Keys.TRAIN.USE_BAKE.Of config
        match Methods.NAME.Of config with
        | None -> Ok(if useBake then BakeMethod.spec else Baselines.vanilla)
        | Some m when useBake && m.Name <> BakeMethod.spec.Name ->
            Error $"{Methods.NAME.Name} = {m.Name} contradicts {Keys.TRAIN.USE_BAKE.Name} = True (set {Keys.TRAIN.USE_BAKE.Name}=False to train {m.Name})"
        | Some m -> Ok m

    /// <summary>The method a config asks for, configured, checked against the batch layout and CutMix; every problem
    /// goes to <paramref name="problems"/> (then the vanilla entry stands in, so validation can go on).</summary>
    let private methodOf (config: Config) (batch: int) (intra: int) (cutMix: bool) (problems: ResizeArray<string>) : ConfiguredMethod =
        let fallback () = match Baselines.vanilla.Configure config with Ok m -> m | Error _ -> failwith "vanilla takes no options"
        match chosenMethod config with
        | Error problem ->
            problems.Add problem
            fallback ()
        | Ok spec ->
            let equalSteps = Keys.METHOD.EQUAL_STEPS_M
            match spec.Sampler with
            | Sampler.Standard ->
                if batch > 0 && intra >= 0 && batch % (intra + 1) <> 0 then
                    problems.Add $"{Keys.TRAIN.BATCH_SIZE.Name} = {batch} must be divisible by {Keys.TRAIN.INTRA_IMGS.Name} + 1 = {intra + 1} (N = anchors × (M + 1))"
            | Sampler.ClassPairs | Sampler.RepeatLastHalf ->
                let layout = if spec.Sampler = Sampler.ClassPairs then "N/2 anchors + N/2 same-class partners" else "N/2 repeated + N/2 new images"
                if batch > 0 && batch % 2 <> 0 then problems.Add $"{Keys.TRAIN.BATCH_SIZE.Name} = {batch} must be even for {spec.Name} ({layout})"
                if intra <> 0 then problems.Add $"{Keys.TRAIN.INTRA_IMGS.Name} = {intra} must be 0 for {spec.Name} (its batches are {layout})"
                if equalSteps.Of config <> 0 then
                    problems.Add $"{equalSteps.Name} = {equalSteps.Of config} must be 0 for {spec.Name}: its batches already hold N/2 new images, as many steps per epoch as BAKE with M = 1"
            if cutMix && not spec.CutMix then
                let supported = Methods.all |> List.filter (fun m -> m.CutMix) |> List.map (fun m -> m.Name) |> String.concat " and "
                problems.Add $"{Keys.TRAIN.IS_CUTMIX.Name} = True is supported with {supported}, not with {spec.Name}"
            match spec.Configure config with
            | Ok configured -> configured
            | Error ps ->
                ps |> List.iter problems.Add
                fallback ()

    /// <summary>Validates a resolved config and returns the typed settings, or every problem found (each naming its key).</summary>
    [<CompiledName("OfConfig")>]
    let ofConfig (config: Config) : Result<TrainingSettings, string list> =
        let problems = ResizeArray<string>()
        let check condition (message: string) = if not condition then problems.Add message
        let positive (key: Key<int>) =
            let v = key.Of config
            check (v > 0) $"{key.Name} = {v} is invalid: expected an integer > 0"
            v
        let nonNegative (key: Key<int>) =
            let v = key.Of config
            check (v >= 0) $"{key.Name} = {v} is invalid: expected an integer >= 0"
            v
        let model =
            match modelName config with
            | Ok name -> name
            | Error problem -> problems.Add problem; ""
        let batch = positive Keys.TRAIN.BATCH_SIZE
        let intra = nonNegative Keys.TRAIN.INTRA_IMGS
        let cutMix =
            { Enabled = Keys.TRAIN.IS_CUTMIX.Of config; Beta = Keys.CUTMIX.BETA.Of config
              Probability = Keys.CUTMIX.PROB.Of config; OffEpochs = Keys.CUTMIX.OFF_EPOCH.Of config }
        check (cutMix.Beta > 0.0) $"{Keys.CUTMIX.BETA.Name} = {cutMix.Beta} is invalid: expected a value > 0"
        check (cutMix.Probability >= 0.0 && cutMix.Probability <= 1.0) $"{Keys.CUTMIX.PROB.Name} = {cutMix.Probability} is invalid: expected a probability in [0, 1]"
        let method = methodOf config batch intra cutMix.Enabled problems
        let epochs = positive Keys.OPTIM.MAX_EPOCH
        let baseLr = Keys.OPTIM.BASE_LR.Of config
        // The optimizer works in float32: a rate it cannot hold would abort inside libtorch.
        let float32Max = float Single.MaxValue
        check (baseLr > 0.0 && baseLr <= float32Max) $"{Keys.OPTIM.BASE_LR.Name} = {baseLr} is invalid: expected a number > 0 that float32 holds (at most 3.4e38)"
        let milestones = Keys.OPTIM.STEPS.Of config |> List.filter (fun s -> s > 0)
        check (milestones = List.sort milestones) $"{Keys.OPTIM.STEPS.Name} = {milestones} must be increasing"
        let policy = (Keys.OPTIM.LR_POLICY.Of config) (milestones, Keys.OPTIM.LR_MULT.Of config)
        let warmup = nonNegative Keys.OPTIM.WARMUP_EPOCHS
        check (warmup <= epochs) $"{Keys.OPTIM.WARMUP_EPOCHS.Name} = {warmup} exceeds {Keys.OPTIM.MAX_EPOCH.Name} = {epochs}"
        let momentum = Keys.OPTIM.MOMENTUM.Of config
        check (momentum >= 0.0 && momentum < 1.0) $"{Keys.OPTIM.MOMENTUM.Name} = {momentum} is invalid: expected a value in [0, 1)"
        let nesterov = Keys.OPTIM.NESTEROV.Of config
        let dampening = Keys.OPTIM.DAMPENING.Of config
        check (not nesterov || (momentum > 0.0 && dampening = 0.0)) "OPTIM.NESTEROV = True needs OPTIM.MOMENTUM > 0 and OPTIM.DAMPENING = 0"
        let decay = Keys.OPTIM.WEIGHT_DECAY.Of config
        check (decay >= 0.0 && decay <= float32Max) $"{Keys.OPTIM.WEIGHT_DECAY.Name} = {decay} is invalid: expected a value >= 0 that float32 holds"
        check (not (Keys.TRAIN.SHUFFLE_BN.Of config)) "TRAIN.SHUFFLE_BN = True needs several GPUs; Bake runs one process (set it False)"
        check (not (Keys.TRAIN.JITTER.Of config)) "TRAIN.JITTER = True (colour jitter) is not implemented (set it False)"
        let testWeights = Keys.TEST.WEIGHTS.Of config
        check (testWeights = "") $"TEST.WEIGHTS = {testWeights} is not used by training: evaluate those weights instead (weights evaluation, or a checkpoint)"
        check (not (Keys.BN.USE_PRECISE_STATS.Of config)) "BN.USE_PRECISE_STATS = True (precise BN statistics) is not implemented (set it False)"
        check (not (Keys.BN.ZERO_INIT_FINAL_GAMMA.Of config)) "BN.ZERO_INIT_FINAL_GAMMA = True is not implemented (set it False)"
        // ε also acts at evaluation, and checkpoints rebuild models with the default, so another value cannot be honoured.
        let batchNormEpsilon = Keys.BN.EPS.Of config
        check (batchNormEpsilon = 1e-5) $"BN.EPS = {batchNormEpsilon} is not supported: Bake's models use 1e-5 (PyTorch's and pycls' default)"
        let batchNormMomentum = Keys.BN.MOM.Of config
        check (batchNormMomentum > 0.0 && batchNormMomentum <= 1.0) $"BN.MOM = {batchNormMomentum} is invalid: expected a value in (0, 1]"
        let trainSplit = Keys.TRAIN.SPLIT.Of config
        check (trainSplit = "train") $"TRAIN.SPLIT = {trainSplit} is not supported: Bake trains on the dataset's train split (set train)"
        let testSplit = Keys.TEST.SPLIT.Of config
        check (testSplit = "test" || testSplit = "val") $"TEST.SPLIT = {testSplit} is not supported: expected test or val (the dataset's held-out split)"
        let device = Keys.DEVICE.Of config
        check (device = "cpu" || device = "cuda" || device.StartsWith "cuda:") $"DEVICE = {device} is invalid: expected cpu, cuda or cuda:N"
        let settings =
            { Seed = Keys.RNG_SEED.Of config
              OutDir = Keys.OUT_DIR.Of config
              Device = device
              Model = model
              Classes = nonNegative Keys.MODEL.NUM_CLASSES
              Dataset = Keys.TRAIN.DATASET.Of config
              TestDataset = Keys.TEST.DATASET.Of config
              Format = Keys.DATA.FORMAT.Of config
              Augment = Keys.DATA.AUGMENT.Of config
              PerClass = nonNegative Keys.TRAIN.PER_CLASS
              HoldoutPerClass = nonNegative Keys.TRAIN.HOLDOUT_PER_CLASS
              ImageSize = nonNegative Keys.TRAIN.IM_SIZE
              TestImageSize = nonNegative Keys.TEST.IM_SIZE
              BatchSize = batch
              IntraImages = intra
              Method = method
              EqualStepsM = nonNegative Keys.METHOD.EQUAL_STEPS_M
              Optimizer =
                { Momentum = momentum; Dampening = dampening; Nesterov = nesterov; WeightDecay = decay
                  BatchNormDecay = if Keys.BN.USE_CUSTOM_WEIGHT_DECAY.Of config then Some(Keys.BN.CUSTOM_WEIGHT_DECAY.Of config) else None
                  BiasDecay = Keys.OPTIM.BIAS_DECAY.Of config }
              Schedule =
                { BaseLr = (if Keys.OPTIM.SCALE_LR_BY_BATCH.Of config then Schedules.scaleLr (baseLr, batch) else baseLr)
                  Policy = policy; Epochs = epochs; WarmupEpochs = warmup
                  WarmupFactor = Keys.OPTIM.WARMUP_FACTOR.Of config; PerIteration = Keys.OPTIM.LR_PER_ITER.Of config }
              Epochs = epochs
              EvalPeriod = positive Keys.TRAIN.EVAL_PERIOD
              CheckpointPeriod = positive Keys.TRAIN.CHECKPOINT_PERIOD
              TestBatchSize = positive Keys.TEST.BATCH_SIZE
              Workers = nonNegative Keys.DATA_LOADER.NUM_WORKERS
              LogPeriod = positive Keys.LOG_PERIOD
              CutMix = cutMix
              Weights = Keys.TRAIN.WEIGHTS.Of config
              AutoResume = Keys.TRAIN.AUTO_RESUME.Of config
              BatchNormEpsilon = batchNormEpsilon
              BatchNormMomentum = batchNormMomentum
              TensorBoard = Keys.LOGGING.TENSORBOARD.Of config
              ChannelsLast = Keys.TRAIN.CHANNELS_LAST.Of config }
        if problems.Count = 0 then Ok settings else Error(List.ofSeq problems)

    /// <summary>Validated settings, or a <see cref="T:Bake.Core.UsageException"/> listing every problem.</summary>
    [<CompiledName("OfConfigOrThrow")>]
    let ofConfigOrThrow (config: Config) : TrainingSettings =
        match ofConfig config with
        | Ok settings -> settings
        | Error problems -> raise (UsageException("invalid configuration:\n  " + String.concat "\n  " problems))
