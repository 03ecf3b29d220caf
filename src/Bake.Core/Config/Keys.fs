namespace Bake.Core

open Bake.Core.Data

/// <summary>Every configuration key that is not a method's own (those are declared with their method, see
/// <c>Methods/</c>), typed and declared once, in pycls's shape: <c>Keys.TRAIN.BATCH_SIZE.Of config</c> reads what
/// pycls calls <c>cfg.TRAIN.BATCH_SIZE</c>. pycls keys keep pycls's meaning and defaults, so the official BAKE configs
/// read unchanged (docs/official-code.md); Bake's own keys fill what pycls lacks. The order of declaration is the order
/// of <c>config.yaml</c>.</summary>
[<RequireQualifiedAccess>]
module Keys =
    let private declared = ResizeArray<ConfigKey>()

    let private add (key: Key<'T>) : Key<'T> =
        declared.Add key.Spec
        key

    /// <summary>The model.</summary>
    module MODEL =
        let TYPE = add (Key.text "MODEL.TYPE" "cnn" "model: a Bake registry name (bake info lists them: cnn, preact-resnet18, resnet50, …) or a pycls type (anynet, effnet, mobilenetv2)")
        let NUM_CLASSES = add (Key.integer "MODEL.NUM_CLASSES" 0 "number of classes; 0 = take it from the dataset (another value must equal the dataset's class count)")

    /// <summary>pycls AnyNet descriptions (mapped onto Bake's ResNets and ResNeXts).</summary>
    module ANYNET =
        let STEM_TYPE = add (Key.text "ANYNET.STEM_TYPE" "simple_stem_in" "pycls AnyNet stem (res_stem_in = the ResNet stem)")
        let STEM_W = add (Key.integer "ANYNET.STEM_W" 32 "pycls AnyNet stem width")
        let BLOCK_TYPE = add (Key.text "ANYNET.BLOCK_TYPE" "res_bottleneck_block" "pycls AnyNet block type")
        let DEPTHS = add (Key.integers "ANYNET.DEPTHS" [] "blocks per stage")
        let WIDTHS = add (Key.integers "ANYNET.WIDTHS" [] "output width per stage")
        let STRIDES = add (Key.integers "ANYNET.STRIDES" [] "stride per stage")
        let BOT_MULS = add (Key.numbers "ANYNET.BOT_MULS" [] "bottleneck multiplier per stage")
        let GROUP_WS = add (Key.integers "ANYNET.GROUP_WS" [] "group width per stage")
        let SE_ON = add (Key.flag "ANYNET.SE_ON" false "squeeze-and-excitation (not supported by the ResNet mapping)")
        let SE_R = add (Key.number "ANYNET.SE_R" 0.25 "squeeze-and-excitation ratio")

    /// <summary>pycls EfficientNet descriptions (B0 maps onto Bake's efficientnet-b0).</summary>
    module EN =
        let STEM_W = add (Key.integer "EN.STEM_W" 32 "EfficientNet stem width")
        let DEPTHS = add (Key.integers "EN.DEPTHS" [] "EfficientNet blocks per stage")
        let WIDTHS = add (Key.integers "EN.WIDTHS" [] "EfficientNet width per stage")
        let EXP_RATIOS = add (Key.numbers "EN.EXP_RATIOS" [] "EfficientNet expansion ratio per stage")
        let SE_R = add (Key.number "EN.SE_R" 0.25 "EfficientNet squeeze-and-excitation ratio")
        let STRIDES = add (Key.integers "EN.STRIDES" [] "EfficientNet stride per stage")
        let KERNELS = add (Key.integers "EN.KERNELS" [] "EfficientNet kernel size per stage")
        let HEAD_W = add (Key.integer "EN.HEAD_W" 1280 "EfficientNet head width")
        let DC_RATIO = add (Key.number "EN.DC_RATIO" 0.0 "EfficientNet drop-connect ratio (must stay 0: Bake's B0 has torchvision's fixed values)")
        let DROPOUT_RATIO = add (Key.number "EN.DROPOUT_RATIO" 0.0 "EfficientNet dropout before the classifier (must stay 0, as DC_RATIO)")

    /// <summary>pycls ResNeSt descriptions (read so that the official configs parse; ResNeSt is refused).</summary>
    module RESNEST =
        let STEM_W = add (Key.integer "RESNEST.STEM_W" 32 "ResNeSt stem width (ResNeSt is not implemented)")
        let DEPTHS = add (Key.integers "RESNEST.DEPTHS" [] "ResNeSt blocks per stage (ResNeSt is not implemented)")

    /// <summary>BatchNorm.</summary>
    module BN =
        let EPS = add (Key.number "BN.EPS" 1e-5 "BatchNorm epsilon (Bake's models use 1e-5: another value is an error)")
        let MOM = add (Key.number "BN.MOM" 0.1 "BatchNorm momentum")
        let USE_PRECISE_STATS = add (Key.flag "BN.USE_PRECISE_STATS" false "recompute BN statistics before testing (pycls; not implemented in Bake: must stay False)")
        let NUM_SAMPLES_PRECISE = add (Key.integer "BN.NUM_SAMPLES_PRECISE" 8192 "images for precise BN statistics")
        let ZERO_INIT_FINAL_GAMMA = add (Key.flag "BN.ZERO_INIT_FINAL_GAMMA" false "zero-initialise the last BN of each residual block (pycls; not implemented in Bake: must stay False)")
        let USE_CUSTOM_WEIGHT_DECAY = add (Key.flag "BN.USE_CUSTOM_WEIGHT_DECAY" false "use BN.CUSTOM_WEIGHT_DECAY for BN parameters")
        let CUSTOM_WEIGHT_DECAY = add (Key.number "BN.CUSTOM_WEIGHT_DECAY" 0.0 "weight decay for BN parameters when enabled")

    /// <summary>The optimiser and the learning-rate schedule.</summary>
    module OPTIM =
        let BASE_LR = add (Key.number "OPTIM.BASE_LR" 0.1 "base learning rate")
        let LR_POLICY =
            add (
                Key.choice "OPTIM.LR_POLICY" "cos"
                    [ "cos", (fun (_: int list, _: float) -> Cosine)
                      "steps", (fun (milestones, factor) -> MultiStep(milestones, factor))
                      "constant", (fun _ -> Constant) ]
                    "learning-rate policy: cos (cosine to 0), steps (× LR_MULT at each of STEPS), constant (pycls's exp and lin are not implemented)"
            )
        let GAMMA = add (Key.number "OPTIM.GAMMA" 0.1 "pycls exp policy factor (read for pycls compatibility; the exp policy is not implemented)")
        let STEPS = add (Key.integers "OPTIM.STEPS" [] "steps policy: epochs where the rate is multiplied by LR_MULT (a leading 0 is ignored)")
        let LR_MULT = add (Key.number "OPTIM.LR_MULT" 0.1 "steps policy multiplier")
        let MAX_EPOCH = add (Key.integer "OPTIM.MAX_EPOCH" 200 "epochs")
        let MOMENTUM = add (Key.number "OPTIM.MOMENTUM" 0.9 "SGD momentum")
        let DAMPENING = add (Key.number "OPTIM.DAMPENING" 0.0 "SGD dampening")
        let NESTEROV = add (Key.flag "OPTIM.NESTEROV" true "Nesterov momentum (pycls default true)")
        let WEIGHT_DECAY = add (Key.number "OPTIM.WEIGHT_DECAY" 5e-4 "weight decay")
        let WARMUP_FACTOR = add (Key.number "OPTIM.WARMUP_FACTOR" 0.1 "warmup starts at BASE_LR × WARMUP_FACTOR")
        let WARMUP_EPOCHS = add (Key.integer "OPTIM.WARMUP_EPOCHS" 0 "linear warmup epochs")
        let LR_PER_ITER = add (Key.flag "OPTIM.LR_PER_ITER" false "Bake: update the rate every iteration instead of every epoch")
        let SCALE_LR_BY_BATCH = add (Key.flag "OPTIM.SCALE_LR_BY_BATCH" false "Bake: use BASE_LR × BATCH_SIZE / 256 (the paper's rule; the official configs already include it)")
        let BIAS_DECAY = add (Key.flag "OPTIM.BIAS_DECAY" true "Bake: apply weight decay to bias parameters")

    /// <summary>Training.</summary>
    module TRAIN =
        let DATASET =
            add (Key.text "TRAIN.DATASET" Datasets.EmbeddedName ("training data: " + String.concat " | " Datasets.knownNames + " | a folder path"))
        let SPLIT = add (Key.text "TRAIN.SPLIT" "train" "training split (Bake trains on the dataset's train split: must be train)")
        let BATCH_SIZE = add (Key.integer "TRAIN.BATCH_SIZE" 128 "total batch N = anchors × (INTRA_IMGS + 1)")
        let IM_SIZE = add (Key.integer "TRAIN.IM_SIZE" 0 "training crop size; 0 = what the dataset's transforms give (native up to 64 px, else 224)")
        let EVAL_PERIOD = add (Key.integer "TRAIN.EVAL_PERIOD" 1 "evaluate every this many epochs (and always after the last)")
        let CHECKPOINT_PERIOD = add (Key.outsideIdentity (Key.integer "TRAIN.CHECKPOINT_PERIOD" 1 "checkpoint every this many epochs"))
        let AUTO_RESUME = add (Key.outsideIdentity (Key.flag "TRAIN.AUTO_RESUME" true "continue the run in OUT_DIR from its last checkpoint when there is one (pycls); False: reusing OUT_DIR needs an explicit resume"))
        let WEIGHTS = add (Key.text "TRAIN.WEIGHTS" "" "initial weights (.safetensors, .pth, or a pycls checkpoint)")
        let INTRA_IMGS = add (Key.integer "TRAIN.INTRA_IMGS" 0 "M: same-class images per anchor (the per-class sampler when > 0)")
        let SYNC_BN = add (Key.flag "TRAIN.SYNC_BN" false "SyncBN (one process: ordinary BN over the whole batch is equivalent)")
        let USE_BAKE = add (Key.flag "TRAIN.USE_BAKE" false "train with BAKE (pycls's switch; METHOD.NAME names any method)")
        let GLOBAL_KE = add (Key.flag "TRAIN.GLOBAL_KE" true "ensemble over the global batch (one process: always the whole batch)")
        let SHUFFLE_BN = add (Key.flag "TRAIN.SHUFFLE_BN" false "MoCo-style shuffle BN (multi-GPU only; must stay false here)")
        let JITTER = add (Key.flag "TRAIN.JITTER" false "colour jitter (not implemented; must stay false)")
        let IS_CUTMIX = add (Key.flag "TRAIN.IS_CUTMIX" false "batch-level CutMix")
        let CHANNELS_LAST =
            add (Key.flag "TRAIN.CHANNELS_LAST" true "Bake: train and evaluate with channels-last (NHWC) images, weights and buffers, libtorch's faster CPU kernels (docs/performance.md); checkpoints keep the standard layout")
        let PER_CLASS = add (Key.integer "TRAIN.PER_CLASS" 0 "Bake: keep only this many training images per class (0 = all), for data-limited studies")
        let HOLDOUT_PER_CLASS = add (Key.integer "TRAIN.HOLDOUT_PER_CLASS" 0 "Bake: hold this many training images per class out of training, for temperature calibration (evaluation with calibration)")

    /// <summary>CutMix.</summary>
    module CUTMIX =
        let BETA = add (Key.number "CUTMIX.BETA" 1.0 "CutMix Beta(β, β) parameter")
        let PROB = add (Key.number "CUTMIX.PROB" 1.0 "probability of mixing a batch")
        let OFF_EPOCH = add (Key.integer "CUTMIX.OFF_EPOCH" 5 "no CutMix in the last this many epochs")

    /// <summary>Evaluation.</summary>
    module TEST =
        let DATASET = add (Key.text "TEST.DATASET" "" "test data; empty = the training dataset's test split")
        let SPLIT = add (Key.text "TEST.SPLIT" "test" "evaluation split: test or val (both mean the dataset's held-out split: test/ or val/)")
        let BATCH_SIZE = add (Key.integer "TEST.BATCH_SIZE" 256 "evaluation batch size")
        let IM_SIZE = add (Key.integer "TEST.IM_SIZE" 0 "evaluation resize before the center crop; 0 = the dataset's own (native up to 64 px, else 256 → 224)")
        let WEIGHTS = add (Key.text "TEST.WEIGHTS" "" "weights to evaluate (pycls; training refuses it: evaluate weights with the evaluation entry points)")

    /// <summary>Data loading.</summary>
    module DATA_LOADER =
        let NUM_WORKERS = add (Key.outsideIdentity (Key.integer "DATA_LOADER.NUM_WORKERS" 2 "background decoding workers"))
        let PIN_MEMORY = add (Key.outsideIdentity (Key.flag "DATA_LOADER.PIN_MEMORY" true "accepted for pycls compatibility (no effect on CPU)"))

    /// <summary>Bake: the method's sampler and the equal-steps comparison (each method's own keys are declared with it).</summary>
    module METHOD =
        let EQUAL_STEPS_M =
            add (Key.integer "METHOD.EQUAL_STEPS_M" 0 "when > 0, plain shuffled batches run BAKE's iterations per epoch for this M (ceil(n·(M+1)/N)), for equal-step comparisons")

    /// <summary>Bake: the data layout and augmentation.</summary>
    module DATA =
        let FORMAT =
            add (
                Key.choice "DATA.FORMAT" "auto" (("auto", None) :: (DataFormat.All |> List.map (fun f -> f.Name, Some f)))
                    "dataset layout: auto detects it; a name forces that layout"
            )
        let AUGMENT =
            add (Key.choice "DATA.AUGMENT" "auto" [ "auto", true; "none", false ] "auto: per dataset, crop+flip for small images, random-resized crop + flip + lighting for large; none: no augmentation")

    /// <summary>The run (pycls's top-level keys).</summary>
    let RNG_SEED = add (Key.integer "RNG_SEED" 1 "random seed")
    /// <summary>The run directory.</summary>
    let OUT_DIR = add (Key.outsideIdentity (Key.text "OUT_DIR" "runs/bake" "run directory"))
    /// <summary>pycls's GPU count.</summary>
    let NUM_GPUS = add (Key.integer "NUM_GPUS" 1 "pycls GPU count (Bake runs one process; the batch is the global batch)")
    /// <summary>Iterations between log lines.</summary>
    let LOG_PERIOD = add (Key.outsideIdentity (Key.integer "LOG_PERIOD" 10 "iterations between log lines"))

    /// <summary>Logging.</summary>
    module LOGGING =
        let TENSORBOARD = add (Key.outsideIdentity (Key.flag "LOGGING.TENSORBOARD" true "write TensorBoard event files into OUT_DIR/tb"))

    /// <summary>The device.</summary>
    let DEVICE = add (Key.text "DEVICE" "cpu" "cpu | cuda | cuda:N")

    /// <summary>Every key declared here, in declaration order.</summary>
    let all: ConfigKey list = List.ofSeq declared
