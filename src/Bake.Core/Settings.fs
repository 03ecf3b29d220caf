namespace Bake.Core

open System

/// <summary>The training method and its hyper-parameters (names as used in configs and on the command line).</summary>
[<NoComparison>]
type Method =
    /// <summary>Cross-entropy only.</summary>
    | Vanilla
    /// <summary>Label smoothing (Tf-KD form).</summary>
    | LabelSmoothing of LabelSmoothingOptions
    /// <summary>Tf-KD with a designed teacher.</summary>
    | TfKdReg of TfKdRegOptions
    /// <summary>Class-wise self-knowledge distillation: B anchors + B same-class partners per batch.</summary>
    | CsKd of CsKdOptions
    /// <summary>BAKE: anchors + M same-class images per batch, Eq. (2) with Eq. (9) targets.</summary>
    | Bake of BakeOptions

    /// <summary>The name used in configs (METHOD.NAME) and logs.</summary>
    member this.Name =
        match this with
        | Vanilla -> "vanilla"
        | LabelSmoothing _ -> "label-smoothing"
        | TfKdReg _ -> "tfkd-reg"
        | CsKd _ -> "cskd"
        | Bake _ -> "bake"

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
[<NoComparison>]
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
      Format: string
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
      Method: Method
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
      TensorBoard: bool }

    /// <summary>N̂, the anchors per batch: N / (M + 1) for BAKE, N / 2 for CS-KD, N otherwise.</summary>
    member this.Anchors =
        match this.Method with
        | CsKd _ -> this.BatchSize / 2
        | _ -> this.BatchSize / (this.IntraImages + 1)

    /// <summary>DATA.FORMAT as <see cref="M:Bake.Core.Data.Datasets.Load"/> takes it: None to detect the format.</summary>
    member this.DataFormat = if this.Format = "auto" then None else Some this.Format

    /// <summary>The dataset (and its format) whose test split the run evaluates on: TEST.DATASET when it names
    /// another dataset (its format detected), else the training dataset in DATA.FORMAT.</summary>
    member this.TestData =
        if String.IsNullOrWhiteSpace this.TestDataset || this.TestDataset = this.Dataset then this.Dataset, this.DataFormat
        else this.TestDataset, None

/// <summary>From a resolved config to validated <see cref="T:Bake.Core.TrainingSettings"/>.</summary>
[<RequireQualifiedAccess>]
module Settings =

    let private methodNames = [ "vanilla"; "label-smoothing"; "tfkd-reg"; "cskd"; "bake" ]

    /// <summary>Maps a pycls AnyNet description onto a Bake ResNet/ResNeXt name, or explains why it cannot.</summary>
    let private anynet (config: Config) : Result<string, string> =
        let stem = Configs.string config "ANYNET.STEM_TYPE"
        let block = Configs.string config "ANYNET.BLOCK_TYPE"
        let depths = Configs.ints config "ANYNET.DEPTHS"
        let widths = Configs.ints config "ANYNET.WIDTHS"
        let strides = Configs.ints config "ANYNET.STRIDES"
        let bots = Configs.floats config "ANYNET.BOT_MULS"
        let groups = Configs.ints config "ANYNET.GROUP_WS"
        let depthName =
            match depths with
            | [ 3; 4; 6; 3 ] -> Some "50"
            | [ 3; 4; 23; 3 ] -> Some "101"
            | [ 3; 8; 36; 3 ] -> Some "152"
            | _ -> None
        if stem <> "res_stem_in" || block <> "res_bottleneck_block" then
            Error $"MODEL.TYPE anynet with ANYNET.STEM_TYPE {stem} and ANYNET.BLOCK_TYPE {block} is not supported: Bake maps only the ResNet/ResNeXt family (res_stem_in + res_bottleneck_block)"
        elif Configs.bool config "ANYNET.SE_ON" then
            Error "MODEL.TYPE anynet with ANYNET.SE_ON True is not supported (no SE ResNets in Bake)"
        elif widths <> [ 256; 512; 1024; 2048 ] || strides <> [ 1; 2; 2; 2 ] || Configs.int config "ANYNET.STEM_W" <> 64 then
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
        match (Configs.string config "MODEL.TYPE").ToLowerInvariant() with
        | "anynet" -> anynet config
        | "effnet" ->
            let b0 =
                Configs.ints config "EN.DEPTHS" = [ 1; 2; 2; 3; 3; 4; 1 ]
                && Configs.ints config "EN.WIDTHS" = [ 16; 24; 40; 80; 112; 192; 320 ]
                && Configs.ints config "EN.KERNELS" = [ 3; 3; 5; 3; 5; 5; 3 ]
                && Configs.ints config "EN.STRIDES" = [ 1; 2; 2; 2; 1; 2; 1 ]
                && Configs.int config "EN.STEM_W" = 32 && Configs.int config "EN.HEAD_W" = 1280
                && Configs.floats config "EN.EXP_RATIOS" = [ 1.0; 6.0; 6.0; 6.0; 6.0; 6.0; 6.0 ]
                && Configs.float config "EN.SE_R" = 0.25
            // Bake's EfficientNet-B0 is torchvision's, with its fixed dropout 0.2 and stochastic depth 0.2: pycls
            // values other than its defaults (0, 0) cannot be honoured, so they are refused rather than ignored.
            let regularisation = Configs.float config "EN.DC_RATIO" = 0.0 && Configs.float config "EN.DROPOUT_RATIO" = 0.0
            if not b0 then
                Error "MODEL.TYPE effnet: only EfficientNet-B0 (EN.DEPTHS [1, 2, 2, 3, 3, 4, 1], WIDTHS [16, 24, 40, 80, 112, 192, 320], EXP_RATIOS [1, 6, …], SE_R 0.25, …) is implemented"
            elif not regularisation then
                Error "MODEL.TYPE effnet: EN.DC_RATIO and EN.DROPOUT_RATIO are not configurable (Bake's EfficientNet-B0 uses torchvision's dropout 0.2 and stochastic depth 0.2); leave them at 0"
            else Ok "efficientnet-b0"
        | "mobilenetv2" -> Ok "mobilenetv2"
        | "resnest" -> Error "MODEL.TYPE resnest: ResNeSt is not implemented in Bake (the official BAKE-S-50/101 configs need it); use a ResNet or ResNeXt config"
        | name -> Ok name

    let private methodOf (config: Config) (problems: ResizeArray<string>) : Method =
        let useBake = Configs.bool config "TRAIN.USE_BAKE"
        let named = (Configs.string config "METHOD.NAME").ToLowerInvariant()
        let name = if named = "" then (if useBake then "bake" else "vanilla") else named
        if named <> "" && not (List.contains named methodNames) then
            let known = String.concat ", " methodNames
            problems.Add $"METHOD.NAME = {named} is unknown: expected one of {known}"
        if named <> "" && named <> "bake" && useBake then
            problems.Add $"METHOD.NAME = {named} contradicts TRAIN.USE_BAKE = True (set one of them)"
        let collect (validated: Result<'T, string list>) fallback =
            match validated with
            | Ok v -> v
            | Error ps -> ps |> List.iter problems.Add; fallback
        match name with
        | "label-smoothing" -> LabelSmoothing(collect (Validate.labelSmoothing { Alpha = Configs.float config "METHOD.LS_ALPHA" }) LabelSmoothingOptions.Default)
        | "tfkd-reg" ->
            TfKdReg(collect (Validate.tfKdReg { Alpha = Configs.float config "METHOD.TFKD_ALPHA"; Temperature = Configs.float config "METHOD.TFKD_TEMP"
                                                Multiplier = Configs.float config "METHOD.TFKD_MULT"; Correct = Configs.float config "METHOD.TFKD_CORRECT" })
                        TfKdRegOptions.Default)
        | "cskd" -> CsKd(collect (Validate.csKd { Temperature = Configs.float config "METHOD.CSKD_TEMP"; Lambda = Configs.float config "METHOD.CSKD_LAMBDA" }) CsKdOptions.Default)
        | "bake" ->
            let propagation =
                match (Configs.string config "METHOD.PROPAGATION").ToLowerInvariant() with
                | "closed-form" -> ClosedForm
                | "one-step" -> OneStep
                | "steps" -> Steps(Configs.int config "METHOD.STEPS")
                | other ->
                    problems.Add $"METHOD.PROPAGATION = {other} is unknown: expected closed-form, one-step or steps"
                    ClosedForm
            let options =
                { Temperature = Configs.float config "TRAIN.TEMP"; Omega = Configs.float config "TRAIN.OMEGA"
                  Lambda = Configs.float config "TRAIN.LAMBDA"; Propagation = propagation }
            Bake(collect (Validate.bake options |> Result.mapError (List.map (fun p -> "BAKE option " + p))) BakeOptions.Default)
        | _ -> Vanilla

    /// <summary>Validates a resolved config and returns the typed settings, or every problem found.</summary>
    [<CompiledName("OfConfig")>]
    let ofConfig (config: Config) : Result<TrainingSettings, string list> =
        let problems = ResizeArray<string>()
        let check condition (message: string) = if not condition then problems.Add message
        let positive name =
            let v = Configs.int config name
            check (v > 0) $"{name} = {v} is invalid: expected an integer > 0"
            v
        let nonNegative name =
            let v = Configs.int config name
            check (v >= 0) $"{name} = {v} is invalid: expected an integer >= 0"
            v
        let model =
            match modelName config with
            | Ok name -> name
            | Error problem -> problems.Add problem; ""
        let method = methodOf config problems
        let batch = positive "TRAIN.BATCH_SIZE"
        let intra = nonNegative "TRAIN.INTRA_IMGS"
        match method with
        | Bake _ | Vanilla | LabelSmoothing _ | TfKdReg _ when batch > 0 && intra >= 0 ->
            check (batch % (intra + 1) = 0)
                $"TRAIN.BATCH_SIZE = {batch} must be divisible by TRAIN.INTRA_IMGS + 1 = {intra + 1} (N = anchors × (M + 1))"
        | CsKd _ when batch > 0 ->
            check (batch % 2 = 0) $"TRAIN.BATCH_SIZE = {batch} must be even for CS-KD (B anchors + B partners)"
            check (intra = 0) $"TRAIN.INTRA_IMGS = {intra} must be 0 for CS-KD (it pairs each anchor with one partner)"
        | _ -> ()
        let epochs = positive "OPTIM.MAX_EPOCH"
        let baseLr = Configs.float config "OPTIM.BASE_LR"
        check (baseLr > 0.0 && Double.IsFinite baseLr) $"OPTIM.BASE_LR = {baseLr} is invalid: expected a number > 0"
        let policy =
            match (Configs.string config "OPTIM.LR_POLICY").ToLowerInvariant() with
            | "cos" -> Cosine
            | "steps" ->
                let steps = Configs.ints config "OPTIM.STEPS" |> List.filter (fun s -> s > 0)
                check (steps = List.sort steps) $"OPTIM.STEPS = {steps} must be increasing"
                MultiStep(steps, Configs.float config "OPTIM.LR_MULT")
            | "constant" | "const" -> Constant
            | other ->
                problems.Add $"OPTIM.LR_POLICY = {other} is not supported: expected cos, steps or constant"
                Cosine
        let warmup = nonNegative "OPTIM.WARMUP_EPOCHS"
        check (warmup <= epochs) $"OPTIM.WARMUP_EPOCHS = {warmup} exceeds OPTIM.MAX_EPOCH = {epochs}"
        let momentum = Configs.float config "OPTIM.MOMENTUM"
        check (momentum >= 0.0 && momentum < 1.0) $"OPTIM.MOMENTUM = {momentum} is invalid: expected a value in [0, 1)"
        let nesterov = Configs.bool config "OPTIM.NESTEROV"
        let dampening = Configs.float config "OPTIM.DAMPENING"
        check (not nesterov || (momentum > 0.0 && dampening = 0.0)) "OPTIM.NESTEROV = True needs OPTIM.MOMENTUM > 0 and OPTIM.DAMPENING = 0"
        let decay = Configs.float config "OPTIM.WEIGHT_DECAY"
        check (decay >= 0.0) $"OPTIM.WEIGHT_DECAY = {decay} is invalid: expected a value >= 0"
        check (not (Configs.bool config "TRAIN.SHUFFLE_BN")) "TRAIN.SHUFFLE_BN = True needs several GPUs; Bake runs one process (set it False)"
        check (not (Configs.bool config "TRAIN.JITTER")) "TRAIN.JITTER = True (colour jitter) is not implemented (set it False)"
        let testWeights = Configs.string config "TEST.WEIGHTS"
        check (testWeights = "") $"TEST.WEIGHTS = {testWeights} is not used by training: evaluate weights with bake eval --weights (or --checkpoint)"
        check (not (Configs.bool config "BN.USE_PRECISE_STATS")) "BN.USE_PRECISE_STATS = True (precise BN statistics) is not implemented (set it False)"
        check (not (Configs.bool config "BN.ZERO_INIT_FINAL_GAMMA")) "BN.ZERO_INIT_FINAL_GAMMA = True is not implemented (set it False)"
        // ε also acts at evaluation, and checkpoints rebuild models with the default, so another value cannot be honoured.
        let batchNormEpsilon = Configs.float config "BN.EPS"
        check (batchNormEpsilon = 1e-5) $"BN.EPS = {batchNormEpsilon} is not supported: Bake's models use 1e-5 (PyTorch's and pycls' default)"
        let batchNormMomentum = Configs.float config "BN.MOM"
        check (batchNormMomentum > 0.0 && batchNormMomentum <= 1.0) $"BN.MOM = {batchNormMomentum} is invalid: expected a value in (0, 1]"
        let trainSplit = Configs.string config "TRAIN.SPLIT"
        check (trainSplit = "train") $"TRAIN.SPLIT = {trainSplit} is not supported: Bake trains on the dataset's train split (set train)"
        let testSplit = Configs.string config "TEST.SPLIT"
        check (testSplit = "test" || testSplit = "val") $"TEST.SPLIT = {testSplit} is not supported: expected test or val (the dataset's held-out split)"
        let augment =
            match (Configs.string config "DATA.AUGMENT").ToLowerInvariant() with
            | "auto" -> true
            | "none" -> false
            | other -> problems.Add $"DATA.AUGMENT = {other} is unknown: expected auto or none"; true
        let format = (Configs.string config "DATA.FORMAT").ToLowerInvariant()
        check (List.contains format [ "auto"; "idx"; "cifar-binary"; "cifar-pickle"; "imagefolder" ])
            $"DATA.FORMAT = {format} is unknown: expected auto, idx, cifar-binary, cifar-pickle or imagefolder"
        let device = Configs.string config "DEVICE"
        check (device = "cpu" || device = "cuda" || device.StartsWith "cuda:") $"DEVICE = {device} is invalid: expected cpu, cuda or cuda:N"
        let cutMix =
            { Enabled = Configs.bool config "TRAIN.IS_CUTMIX"; Beta = Configs.float config "CUTMIX.BETA"
              Probability = Configs.float config "CUTMIX.PROB"; OffEpochs = Configs.int config "CUTMIX.OFF_EPOCH" }
        check (cutMix.Beta > 0.0) $"CUTMIX.BETA = {cutMix.Beta} is invalid: expected a value > 0"
        check (cutMix.Probability >= 0.0 && cutMix.Probability <= 1.0) $"CUTMIX.PROB = {cutMix.Probability} is invalid: expected a probability in [0, 1]"
        match method with
        | CsKd _ | LabelSmoothing _ | TfKdReg _ when cutMix.Enabled ->
            problems.Add $"TRAIN.IS_CUTMIX = True is supported with vanilla and bake, not with {method.Name}"
        | _ -> ()
        let settings =
            { Seed = Configs.int config "RNG_SEED"
              OutDir = Configs.string config "OUT_DIR"
              Device = device
              Model = model
              Classes = nonNegative "MODEL.NUM_CLASSES"
              Dataset = Configs.string config "TRAIN.DATASET"
              TestDataset = Configs.string config "TEST.DATASET"
              Format = format
              Augment = augment
              PerClass = nonNegative "TRAIN.PER_CLASS"
              HoldoutPerClass = nonNegative "TRAIN.HOLDOUT_PER_CLASS"
              ImageSize = nonNegative "TRAIN.IM_SIZE"
              TestImageSize = nonNegative "TEST.IM_SIZE"
              BatchSize = batch
              IntraImages = intra
              Method = method
              EqualStepsM = nonNegative "METHOD.EQUAL_STEPS_M"
              Optimizer =
                { Momentum = momentum; Dampening = dampening; Nesterov = nesterov; WeightDecay = decay
                  BatchNormDecay = if Configs.bool config "BN.USE_CUSTOM_WEIGHT_DECAY" then Some(Configs.float config "BN.CUSTOM_WEIGHT_DECAY") else None
                  BiasDecay = Configs.bool config "OPTIM.BIAS_DECAY" }
              Schedule =
                { BaseLr = (if Configs.bool config "OPTIM.SCALE_LR_BY_BATCH" then Schedules.scaleLr (baseLr, batch) else baseLr)
                  Policy = policy; Epochs = epochs; WarmupEpochs = warmup
                  WarmupFactor = Configs.float config "OPTIM.WARMUP_FACTOR"; PerIteration = Configs.bool config "OPTIM.LR_PER_ITER" }
              Epochs = epochs
              EvalPeriod = positive "TRAIN.EVAL_PERIOD"
              CheckpointPeriod = positive "TRAIN.CHECKPOINT_PERIOD"
              TestBatchSize = positive "TEST.BATCH_SIZE"
              Workers = nonNegative "DATA_LOADER.NUM_WORKERS"
              LogPeriod = positive "LOG_PERIOD"
              CutMix = cutMix
              Weights = Configs.string config "TRAIN.WEIGHTS"
              AutoResume = Configs.bool config "TRAIN.AUTO_RESUME"
              BatchNormEpsilon = batchNormEpsilon
              BatchNormMomentum = batchNormMomentum
              TensorBoard = Configs.bool config "LOGGING.TENSORBOARD" }
        if problems.Count = 0 then Ok settings else Error(List.ofSeq problems)

    /// <summary>Validated settings, or a <see cref="T:Bake.Core.UsageException"/> listing every problem.</summary>
    [<CompiledName("OfConfigOrThrow")>]
    let ofConfigOrThrow (config: Config) : TrainingSettings =
        match ofConfig config with
        | Ok settings -> settings
        | Error problems -> raise (UsageException("invalid configuration:\n  " + String.concat "\n  " problems))
