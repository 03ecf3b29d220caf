namespace Bake.Core

open System
open System.Globalization
open System.IO
open System.Text
open YamlDotNet.RepresentationModel

/// <summary>A configuration value, typed by the schema.</summary>
type ConfigValue =
    | Flag of bool
    | Integer of int
    | Number of float
    | Text of string
    | Integers of int list
    | Numbers of float list

/// <summary>One key of the configuration schema: its name (SECTION.KEY), default and meaning.</summary>
type ConfigKey = { Key: string; Default: ConfigValue; Doc: string }

/// <summary>A resolved configuration: every schema key with its value (defaults → file → overrides).</summary>
[<NoComparison>]
type Config = { Values: Map<string, ConfigValue>; Sources: string list }

/// <summary>The configuration schema. pycls keys keep pycls's meaning and defaults, so the official BAKE
/// configs read unchanged (REFERENCE.md §4, STYLE.md §4); Bake's own keys fill what pycls lacks.</summary>
[<RequireQualifiedAccess>]
module ConfigSchema =
    let private key name value doc = { Key = name; Default = value; Doc = doc }

    /// <summary>Every key Bake accepts, in the order they are written to config.yaml.</summary>
    let keys : ConfigKey list =
        [
          // ------------------------------------------------------------------ model
          key "MODEL.TYPE" (Text "cnn") "model: a Bake registry name (cnn, preact-resnet18, resnet50, …) or a pycls type (anynet, effnet, mobilenetv2)"
          key "MODEL.NUM_CLASSES" (Integer 0) "number of classes; 0 = take it from the dataset (another value must equal the dataset's class count)"
          key "ANYNET.STEM_TYPE" (Text "simple_stem_in") "pycls AnyNet stem (res_stem_in = the ResNet stem)"
          key "ANYNET.STEM_W" (Integer 32) "pycls AnyNet stem width"
          key "ANYNET.BLOCK_TYPE" (Text "res_bottleneck_block") "pycls AnyNet block type"
          key "ANYNET.DEPTHS" (Integers []) "blocks per stage"
          key "ANYNET.WIDTHS" (Integers []) "output width per stage"
          key "ANYNET.STRIDES" (Integers []) "stride per stage"
          key "ANYNET.BOT_MULS" (Numbers []) "bottleneck multiplier per stage"
          key "ANYNET.GROUP_WS" (Integers []) "group width per stage"
          key "ANYNET.SE_ON" (Flag false) "squeeze-and-excitation (not supported by the ResNet mapping)"
          key "ANYNET.SE_R" (Number 0.25) "squeeze-and-excitation ratio"
          key "EN.STEM_W" (Integer 32) "EfficientNet stem width"
          key "EN.DEPTHS" (Integers []) "EfficientNet blocks per stage"
          key "EN.WIDTHS" (Integers []) "EfficientNet width per stage"
          key "EN.EXP_RATIOS" (Numbers []) "EfficientNet expansion ratio per stage"
          key "EN.SE_R" (Number 0.25) "EfficientNet squeeze-and-excitation ratio"
          key "EN.STRIDES" (Integers []) "EfficientNet stride per stage"
          key "EN.KERNELS" (Integers []) "EfficientNet kernel size per stage"
          key "EN.HEAD_W" (Integer 1280) "EfficientNet head width"
          key "EN.DC_RATIO" (Number 0.0) "EfficientNet drop-connect ratio"
          key "EN.DROPOUT_RATIO" (Number 0.0) "EfficientNet dropout before the classifier"
          key "RESNEST.STEM_W" (Integer 32) "ResNeSt stem width (ResNeSt is not implemented)"
          key "RESNEST.DEPTHS" (Integers []) "ResNeSt blocks per stage (ResNeSt is not implemented)"
          key "BN.EPS" (Number 1e-5) "BatchNorm epsilon (Bake's models use 1e-5: another value is an error)"
          key "BN.MOM" (Number 0.1) "BatchNorm momentum"
          key "BN.USE_PRECISE_STATS" (Flag false) "recompute BN statistics before testing (pycls; not implemented in Bake: must stay False)"
          key "BN.NUM_SAMPLES_PRECISE" (Integer 8192) "images for precise BN statistics"
          key "BN.ZERO_INIT_FINAL_GAMMA" (Flag false) "zero-initialise the last BN of each residual block (pycls; not implemented in Bake: must stay False)"
          key "BN.USE_CUSTOM_WEIGHT_DECAY" (Flag false) "use BN.CUSTOM_WEIGHT_DECAY for BN parameters"
          key "BN.CUSTOM_WEIGHT_DECAY" (Number 0.0) "weight decay for BN parameters when enabled"
          // ------------------------------------------------------------------ optimisation
          key "OPTIM.BASE_LR" (Number 0.1) "base learning rate"
          key "OPTIM.LR_POLICY" (Text "cos") "cos | steps | exp | lin: learning-rate policy (pycls); cos and steps are supported"
          key "OPTIM.GAMMA" (Number 0.1) "pycls exp policy factor"
          key "OPTIM.STEPS" (Integers []) "steps policy: epochs where the rate is multiplied by LR_MULT (a leading 0 is ignored)"
          key "OPTIM.LR_MULT" (Number 0.1) "steps policy multiplier"
          key "OPTIM.MAX_EPOCH" (Integer 200) "epochs"
          key "OPTIM.MOMENTUM" (Number 0.9) "SGD momentum"
          key "OPTIM.DAMPENING" (Number 0.0) "SGD dampening"
          key "OPTIM.NESTEROV" (Flag true) "Nesterov momentum (pycls default true)"
          key "OPTIM.WEIGHT_DECAY" (Number 5e-4) "weight decay"
          key "OPTIM.WARMUP_FACTOR" (Number 0.1) "warmup starts at BASE_LR × WARMUP_FACTOR"
          key "OPTIM.WARMUP_EPOCHS" (Integer 0) "linear warmup epochs"
          key "OPTIM.LR_PER_ITER" (Flag false) "Bake: update the rate every iteration instead of every epoch"
          key "OPTIM.SCALE_LR_BY_BATCH" (Flag false) "Bake: use BASE_LR × BATCH_SIZE / 256 (the paper's rule; the official configs already include it)"
          key "OPTIM.BIAS_DECAY" (Flag true) "Bake: apply weight decay to bias parameters"
          // ------------------------------------------------------------------ training
          key "TRAIN.DATASET" (Text "embedded") "training data: embedded | fashion-mnist | mnist | cifar10 | cifar100 | a folder path"
          key "TRAIN.SPLIT" (Text "train") "training split (Bake trains on the dataset's train split: must be train)"
          key "TRAIN.BATCH_SIZE" (Integer 128) "total batch N = anchors × (INTRA_IMGS + 1)"
          key "TRAIN.IM_SIZE" (Integer 0) "training crop size; 0 = what the dataset's transforms give (native up to 64 px, else 224); another value is an error"
          key "TRAIN.EVAL_PERIOD" (Integer 1) "evaluate every this many epochs (and always after the last)"
          key "TRAIN.CHECKPOINT_PERIOD" (Integer 1) "checkpoint every this many epochs"
          key "TRAIN.AUTO_RESUME" (Flag true) "continue the run in OUT_DIR from its last checkpoint when there is one (pycls); False: refuse to reuse OUT_DIR without --resume"
          key "TRAIN.WEIGHTS" (Text "") "initial weights (.safetensors, .pth, or a pycls checkpoint)"
          key "TRAIN.INTRA_IMGS" (Integer 0) "M: same-class images per anchor (per-class sampler)"
          key "TRAIN.SYNC_BN" (Flag false) "SyncBN (one process: ordinary BN over the whole batch is equivalent)"
          key "TRAIN.USE_BAKE" (Flag false) "train with BAKE"
          key "TRAIN.OMEGA" (Number 0.5) "ω: ensembling weight"
          key "TRAIN.TEMP" (Number 4.0) "τ: temperature"
          key "TRAIN.LAMBDA" (Number 1.0) "λ: distillation weight"
          key "TRAIN.GLOBAL_KE" (Flag true) "ensemble over the global batch (one process: always the whole batch)"
          key "TRAIN.SHUFFLE_BN" (Flag false) "MoCo-style shuffle BN (multi-GPU only; must stay false here)"
          key "TRAIN.JITTER" (Flag false) "colour jitter (not implemented; must stay false)"
          key "TRAIN.IS_CUTMIX" (Flag false) "batch-level CutMix"
          key "TRAIN.PER_CLASS" (Integer 0) "Bake: keep only this many training images per class (0 = all), for data-limited studies"
          key "TRAIN.HOLDOUT_PER_CLASS" (Integer 0) "Bake: hold this many training images per class out of training, for temperature calibration (bake eval --calibrate)"
          key "CUTMIX.BETA" (Number 1.0) "CutMix Beta(β, β) parameter"
          key "CUTMIX.PROB" (Number 1.0) "probability of mixing a batch"
          key "CUTMIX.OFF_EPOCH" (Integer 5) "no CutMix in the last this many epochs"
          key "TEST.DATASET" (Text "") "test data; empty = the training dataset's test split"
          key "TEST.SPLIT" (Text "test") "evaluation split: test or val (both mean the dataset's held-out split: test/ or val/)"
          key "TEST.BATCH_SIZE" (Integer 256) "evaluation batch size"
          key "TEST.IM_SIZE" (Integer 0) "evaluation resize before the center crop; 0 = the dataset's own (native up to 64 px, else 256 → 224); another value is an error"
          key "TEST.WEIGHTS" (Text "") "weights to evaluate"
          key "DATA_LOADER.NUM_WORKERS" (Integer 2) "background decoding workers"
          key "DATA_LOADER.PIN_MEMORY" (Flag true) "accepted for pycls compatibility (no effect on CPU)"
          // ------------------------------------------------------------------ Bake: method and data
          key "METHOD.NAME" (Text "") "vanilla | label-smoothing | tfkd-reg | cskd | bake; empty = bake if TRAIN.USE_BAKE else vanilla"
          key "METHOD.PROPAGATION" (Text "closed-form") "BAKE propagation: closed-form (Eq. 9) | one-step (Eq. 6) | steps (Eq. 7, METHOD.STEPS times)"
          key "METHOD.STEPS" (Integer 3) "propagation steps for METHOD.PROPAGATION = steps"
          key "METHOD.EQUAL_STEPS_M" (Integer 0) "when > 0, plain shuffled batches run BAKE's iterations per epoch for this M (ceil(n·(M+1)/N)), for equal-step comparisons"
          key "METHOD.LS_ALPHA" (Number 0.1) "label smoothing α"
          key "METHOD.TFKD_ALPHA" (Number 0.1) "Tf-KD_reg α"
          key "METHOD.TFKD_TEMP" (Number 20.0) "Tf-KD_reg temperature"
          key "METHOD.TFKD_MULT" (Number 100.0) "Tf-KD_reg multiplier"
          key "METHOD.TFKD_CORRECT" (Number 0.99) "Tf-KD_reg teacher probability on the true class"
          key "METHOD.CSKD_TEMP" (Number 4.0) "CS-KD temperature"
          key "METHOD.CSKD_LAMBDA" (Number 1.0) "CS-KD λ"
          key "DATA.FORMAT" (Text "auto") "dataset layout: auto | idx | cifar-binary | cifar-pickle | imagefolder"
          key "DATA.AUGMENT" (Text "auto") "auto (per dataset: crop+flip for small images, random-resized crop + flip + lighting for large) | none"
          // ------------------------------------------------------------------ run
          key "RNG_SEED" (Integer 1) "random seed"
          key "OUT_DIR" (Text "runs/bake") "run directory"
          key "NUM_GPUS" (Integer 1) "pycls GPU count (Bake runs one process; the batch is the global batch)"
          key "LOG_PERIOD" (Integer 10) "iterations between log lines"
          key "LOGGING.TENSORBOARD" (Flag true) "write TensorBoard event files into OUT_DIR/tb"
          key "DEVICE" (Text "cpu") "cpu | cuda | cuda:N"
        ]

    /// <summary>The keys by name.</summary>
    let byName : Map<string, ConfigKey> = keys |> List.map (fun k -> k.Key, k) |> Map.ofList

    /// <summary>The default configuration.</summary>
    let defaults : Config = { Values = keys |> List.map (fun k -> k.Key, k.Default) |> Map.ofList; Sources = [ "defaults" ] }

/// <summary>Reading, overriding, validating and writing configurations (pycls YAML schema).</summary>
[<RequireQualifiedAccess>]
module Configs =

    let private invariant = CultureInfo.InvariantCulture

    /// <summary>The valid key closest to an unknown one.</summary>
    [<CompiledName("NearestKey")>]
    let nearestKey (unknown: string) : string =
        Spelling.nearest (ConfigSchema.keys |> List.map (fun k -> k.Key), unknown.ToUpperInvariant())

    let private unknownKey (where: string) (name: string) =
        $"{where}: unknown key {name} (did you mean {nearestKey name}?)"

    let private parseScalar (where: string) (name: string) (expected: ConfigValue) (text: string) : Result<ConfigValue, string> =
        let bad what = Error $"{where}: {name} = '{text}' is invalid: expected {what}"
        let number (s: string) =
            match Double.TryParse(s.Trim(), NumberStyles.Float, invariant) with
            | true, v -> Some v
            | _ -> None
        let integer (s: string) =
            match Int32.TryParse(s.Trim(), NumberStyles.Integer, invariant) with
            | true, v -> Some v
            | _ -> None
        let items (s: string) =
            let s = s.Trim()
            let inner = if s.StartsWith "[" && s.EndsWith "]" then s.Substring(1, s.Length - 2) else s
            if String.IsNullOrWhiteSpace inner then [] else inner.Split(',') |> List.ofArray
        match expected with
        | Flag _ ->
            match text.Trim().ToLowerInvariant() with
            | "true" | "yes" | "on" -> Ok(Flag true)
            | "false" | "no" | "off" -> Ok(Flag false)
            | _ -> bad "True or False"
        | Integer _ -> integer text |> Option.map Integer |> Option.map Ok |> Option.defaultValue (bad "an integer")
        | Number _ -> number text |> Option.map Number |> Option.map Ok |> Option.defaultValue (bad "a number")
        | Text _ -> Ok(Text(text.Trim()))
        | Integers _ ->
            let parsed = items text |> List.map integer
            if parsed |> List.forall Option.isSome then Ok(Integers(parsed |> List.map Option.get)) else bad "a list of integers, e.g. [1, 2, 2, 2]"
        | Numbers _ ->
            let parsed = items text |> List.map number
            if parsed |> List.forall Option.isSome then Ok(Numbers(parsed |> List.map Option.get)) else bad "a list of numbers, e.g. [0.25, 0.25]"

    let private nodeText (node: YamlNode) =
        match node with
        | :? YamlScalarNode as scalar -> scalar.Value
        | :? YamlSequenceNode as sequence ->
            "[" + (sequence.Children |> Seq.map (fun c -> match c with :? YamlScalarNode as s -> s.Value | other -> string other) |> String.concat ", ") + "]"
        | other -> string other

    /// <summary>Applies key/value pairs (already flattened to SECTION.KEY) to a config, collecting every problem.</summary>
    let private applyPairs (where: string) (config: Config) (pairs: (string * string) list) : Result<Config, string list> =
        let problems = ResizeArray<string>()
        let mutable values = config.Values
        for name, text in pairs do
            match Map.tryFind name ConfigSchema.byName with
            | None -> problems.Add(unknownKey where name)
            | Some spec ->
                match parseScalar where name spec.Default text with
                | Ok value -> values <- Map.add name value values
                | Error problem -> problems.Add problem
        if problems.Count = 0 then Ok { Values = values; Sources = config.Sources @ [ where ] } else Error(List.ofSeq problems)

    /// <summary>Flattens pycls YAML (sections of keys, plus top-level keys) into SECTION.KEY pairs.</summary>
    [<CompiledName("ParseYaml")>]
    let parseYaml (where: string) (text: string) : Result<(string * string) list, string list> =
        try
            let stream = YamlStream()
            stream.Load(new StringReader(text))
            if stream.Documents.Count = 0 then Ok []
            else
                match stream.Documents[0].RootNode with
                | :? YamlMappingNode as root ->
                    let pairs = ResizeArray()
                    let problems = ResizeArray()
                    for entry in root.Children do
                        let section = nodeText entry.Key
                        match entry.Value with
                        | :? YamlMappingNode as inner ->
                            for item in inner.Children do
                                match item.Value with
                                | :? YamlMappingNode -> problems.Add $"{where}: {section}.{nodeText item.Key} is a nested section; Bake's schema has two levels"
                                | value -> pairs.Add((section + "." + nodeText item.Key, nodeText value))
                        | value -> pairs.Add((section, nodeText value))
                    if problems.Count = 0 then Ok(List.ofSeq pairs) else Error(List.ofSeq problems)
                | :? YamlScalarNode as scalar when String.IsNullOrEmpty scalar.Value -> Ok []
                | _ -> Error [ $"{where}: expected a mapping of sections (MODEL:, OPTIM:, TRAIN:, …) at the top level" ]
        with :? YamlDotNet.Core.YamlException as e ->
            Error [ $"{where}: invalid YAML at line {e.Start.Line}, column {e.Start.Column}: {e.Message}" ]

    /// <summary>Applies a YAML document to a config.</summary>
    [<CompiledName("ApplyYaml")>]
    let applyYaml (where: string) (text: string) (config: Config) : Result<Config, string list> =
        parseYaml where text |> Result.bind (applyPairs where config)

    /// <summary>Applies <c>KEY=VALUE</c> overrides (the <c>--set</c> options).</summary>
    [<CompiledName("ApplyOverrides")>]
    let applyOverrides (overrides: string list) (config: Config) : Result<Config, string list> =
        let parsed =
            overrides
            |> List.map (fun o ->
                match o.IndexOf '=' with
                | i when i > 0 -> Ok(o.Substring(0, i).Trim().ToUpperInvariant(), o.Substring(i + 1))
                | _ -> Error $"--set {o}: expected KEY=VALUE, e.g. --set TRAIN.OMEGA=0.3")
        let problems = parsed |> List.choose (function Error e -> Some e | Ok _ -> None)
        if not problems.IsEmpty then Error problems
        else applyPairs "--set" config (parsed |> List.choose (function Ok p -> Some p | Error _ -> None))

    /// <summary>Reads a config file on top of the defaults.</summary>
    /// <exception cref="T:Bake.Core.UsageException">The file is missing or invalid; every problem listed.</exception>
    [<CompiledName("Load")>]
    let load (path: string, overrides: string list) : Config =
        if not (File.Exists path) then raise (UsageException $"config file {path} does not exist")
        let text = File.ReadAllText path
        match applyYaml path text ConfigSchema.defaults |> Result.bind (applyOverrides overrides) with
        | Ok config -> config
        | Error problems -> raise (UsageException("invalid configuration:\n  " + String.concat "\n  " problems))

    /// <summary>The default job: BAKE with the small CNN on the embedded Fashion-MNIST subset
    /// (configs/embedded/BAKE-cnn.yaml, compiled into the library).</summary>
    [<CompiledName("DefaultJob")>]
    let defaultJob (overrides: string list) : Config =
        use stream = typeof<ConfigKey>.Assembly.GetManifestResourceStream "Bake.Core.DefaultJob.yaml"
        use reader = new StreamReader(stream)
        match applyYaml "configs/embedded/BAKE-cnn.yaml" (reader.ReadToEnd()) ConfigSchema.defaults |> Result.bind (applyOverrides overrides) with
        | Ok config -> config
        | Error problems -> raise (UsageException("invalid configuration:\n  " + String.concat "\n  " problems))

    /// <summary>A value of the config.</summary>
    let private get (config: Config) name = config.Values[name]

    /// <summary>The integer value of a key. The typed accessors below fail only on a programming error (a key
    /// name not in <c>ConfigSchema.keys</c>, or the wrong accessor for its kind): parsing already checked the kind.</summary>
    [<CompiledName("Int")>]
    let int (config: Config) (name: string) = match get config name with Integer v -> v | other -> failwithf "%s is %A, not an integer" name other

    /// <summary>The number value of a key.</summary>
    [<CompiledName("Float")>]
    let float (config: Config) (name: string) = match get config name with Number v -> v | other -> failwithf "%s is %A, not a number" name other

    /// <summary>The flag value of a key (YAML True/False).</summary>
    [<CompiledName("Bool")>]
    let bool (config: Config) (name: string) = match get config name with Flag v -> v | other -> failwithf "%s is %A, not a flag" name other

    /// <summary>The text value of a key ("" when unset).</summary>
    [<CompiledName("String")>]
    let string (config: Config) (name: string) = match get config name with Text v -> v | other -> failwithf "%s is %A, not text" name other

    /// <summary>The integer-list value of a key.</summary>
    [<CompiledName("Ints")>]
    let ints (config: Config) (name: string) = match get config name with Integers v -> v | other -> failwithf "%s is %A, not integers" name other

    /// <summary>The number-list value of a key.</summary>
    [<CompiledName("Floats")>]
    let floats (config: Config) (name: string) = match get config name with Numbers v -> v | other -> failwithf "%s is %A, not numbers" name other

    let private format (value: ConfigValue) =
        let number (v: float) =
            let s = v.ToString("R", invariant)
            if s.Contains "." || s.Contains "E" || s.Contains "N" || s.Contains "I" then s else s + ".0"
        match value with
        | Flag v -> if v then "True" else "False"
        | Integer v -> v.ToString invariant
        | Number v -> number v
        | Text v -> if v = "" then "''" elif v.IndexOfAny [| ':'; '#'; '['; ']'; '{'; '}'; ','; '\''; '"' |] >= 0 || v <> v.Trim() then "'" + v.Replace("'", "''") + "'" else v
        | Integers v -> "[" + (v |> List.map (fun i -> i.ToString invariant) |> String.concat ", ") + "]"
        | Numbers v -> "[" + (v |> List.map number |> String.concat ", ") + "]"

    /// <summary>The resolved config as pycls-style YAML, every key with its value, grouped by section.</summary>
    [<CompiledName("ToYaml")>]
    let toYaml (config: Config) : string =
        let text = StringBuilder()
        text.AppendLine("# Resolved Bake configuration (" + String.concat " → " config.Sources + ")") |> ignore
        let mutable section = ""
        for spec in ConfigSchema.keys do
            let value = format config.Values[spec.Key]
            match spec.Key.IndexOf '.' with
            | -1 -> text.AppendLine($"{spec.Key}: {value}") |> ignore
            | i ->
                let s = spec.Key.Substring(0, i)
                if s <> section then
                    section <- s
                    text.AppendLine(s + ":") |> ignore
                text.AppendLine($"  {spec.Key.Substring(i + 1)}: {value}") |> ignore
        text.ToString()

    /// <summary>SHA-256 of the resolved YAML, stored in checkpoints to detect a resume with another config.</summary>
    [<CompiledName("Hash")>]
    let hash (config: Config) : string =
        let resolved = { config with Sources = [] }
        Convert.ToHexString(Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(toYaml resolved))).ToLowerInvariant()
