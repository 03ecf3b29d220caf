namespace Bake.Core

open System
open System.IO
open System.Text.Json.Nodes
open TorchSharp
open Bake.Core.Models

/// <summary>Running sums of a partly trained epoch, so that a resumed run ends with the same summary.</summary>
[<NoComparison>]
type EpochProgress =
    { Iterations: int
      LossSum: float
      TermSums: (string * float) list
      Correct: int64
      Seen: int64
      Seconds: float }

    /// <summary>Nothing trained yet in this epoch.</summary>
    static member Empty = { Iterations = 0; LossSum = 0.0; TermSums = []; Correct = 0L; Seen = 0L; Seconds = 0.0 }

/// <summary>What a checkpoint records besides weights and optimizer state.</summary>
[<NoComparison>]
type CheckpointState =
    {
        /// <summary>Completed epochs.</summary>
        Epoch: int
        /// <summary>Progress inside the next epoch (a checkpoint written on cancellation is mid-epoch).</summary>
        Progress: EpochProgress
        /// <summary>SHA-256 of the resolved config (see Configs.hash).</summary>
        ConfigHash: string
        /// <summary>Model registry name.</summary>
        Model: string
        /// <summary>Class names, in label order.</summary>
        Classes: string[]
        /// <summary>Image shape C, H, W the model was built for.</summary>
        ImageShape: int[]
        /// <summary>Normalisation mean and std per channel.</summary>
        Mean: float[]
        Std: float[]
        /// <summary>Completed epochs' summaries.</summary>
        History: EpochSummary list
        /// <summary>libtorch's intra-op threads when the checkpoint was written (results differ between thread
        /// counts; 0 when a checkpoint of an older Bake did not record it).</summary>
        Threads: int
    }

/// <summary>Checkpoints in a run directory: <c>checkpoints/&lt;name&gt;/{model.safetensors, optimizer.bin, state.json}</c>
/// and, for methods that carry tensors between iterations or epochs (PS-KD, DLB), <c>method_state.safetensors</c>,
/// written into a temporary folder and renamed into place, with <c>last.json</c> / <c>best.json</c> pointers
/// (written atomically) naming the folder. A killed run never leaves a half checkpoint.</summary>
[<RequireQualifiedAccess>]
module Checkpoints =
    let private folder (runDir: string) = Path.Combine(runDir, "checkpoints")

    /// <summary>The file of a checkpoint that holds the method's carried tensors.</summary>
    [<Literal>]
    let MethodStateFile = "method_state.safetensors"

    /// <summary>The folder name a pointer file (last.json, best.json) names.</summary>
    /// <exception cref="T:Bake.Core.BakeException">The pointer file is not JSON with a "folder" string.</exception>
    let private pointedFolder (pointerFile: string) : string =
        try
            let node = JsonNode.Parse(File.ReadAllText pointerFile)
            let folder = node["folder"].GetValue<string>()
            if String.IsNullOrWhiteSpace folder then raise (FormatException "empty folder name")
            folder
        with
        | :? Text.Json.JsonException | :? InvalidOperationException | :? NullReferenceException | :? FormatException as e ->
            raise (BakeException($"{pointerFile}: malformed checkpoint pointer (expected {{\"folder\": \"<checkpoint folder>\"}}): {e.Message}", e))

    let private stateJson (state: CheckpointState) =
        let o = JsonObject()
        o["format"] <- JsonValue.Create "bake-checkpoint-1"
        o["epoch"] <- JsonValue.Create state.Epoch
        let p = JsonObject()
        p["iterations"] <- JsonValue.Create state.Progress.Iterations
        p["loss_sum"] <- JsonValue.Create state.Progress.LossSum
        p["term_names"] <- JsonArray(state.Progress.TermSums |> List.map (fun (n, _) -> JsonValue.Create n :> JsonNode) |> Array.ofList)
        p["term_sums"] <- JsonArray(state.Progress.TermSums |> List.map (fun (_, v) -> JsonValue.Create v :> JsonNode) |> Array.ofList)
        p["correct"] <- JsonValue.Create state.Progress.Correct
        p["seen"] <- JsonValue.Create state.Progress.Seen
        p["seconds"] <- JsonValue.Create state.Progress.Seconds
        o["progress"] <- p
        o["config_hash"] <- JsonValue.Create state.ConfigHash
        o["model"] <- JsonValue.Create state.Model
        o["classes"] <- JsonArray(state.Classes |> Array.map (fun c -> JsonValue.Create c :> JsonNode))
        o["image_shape"] <- JsonArray(state.ImageShape |> Array.map (fun c -> JsonValue.Create c :> JsonNode))
        o["mean"] <- JsonArray(state.Mean |> Array.map (fun c -> JsonValue.Create c :> JsonNode))
        o["std"] <- JsonArray(state.Std |> Array.map (fun c -> JsonValue.Create c :> JsonNode))
        o["history"] <- JsonArray(state.History |> List.map (fun r -> RunFiles.epochJson r :> JsonNode) |> Array.ofList)
        o["threads"] <- JsonValue.Create state.Threads
        o

    let private stateOf (path: string) (node: JsonNode) : CheckpointState =
        if isNull node || node["format"] = null || node["format"].GetValue<string>() <> "bake-checkpoint-1" then
            raise (BakeException $"{path}: not a Bake checkpoint state (expected \"format\": \"bake-checkpoint-1\")")
        for field in [ "epoch"; "progress"; "config_hash"; "model"; "classes"; "image_shape"; "mean"; "std"; "history" ] do
            if isNull node[field] then raise (BakeException $"{path}: malformed checkpoint state: the field \"{field}\" is missing")
        let p = node["progress"]
        let names = p["term_names"].AsArray() |> Seq.map (fun n -> n.GetValue<string>()) |> List.ofSeq
        let sums = p["term_sums"].AsArray() |> Seq.map (fun n -> n.GetValue<float>()) |> List.ofSeq
        let arrayOf (name: string) (read: JsonNode -> 'T) = node[name].AsArray() |> Seq.map read |> Array.ofSeq
        { Epoch = node["epoch"].GetValue<int>()
          Progress =
            { Iterations = p["iterations"].GetValue<int>(); LossSum = p["loss_sum"].GetValue<float>()
              TermSums = List.zip names sums; Correct = p["correct"].GetValue<int64>(); Seen = p["seen"].GetValue<int64>()
              Seconds = p["seconds"].GetValue<float>() }
          ConfigHash = node["config_hash"].GetValue<string>()
          Model = node["model"].GetValue<string>()
          Classes = arrayOf "classes" (fun n -> n.GetValue<string>())
          ImageShape = arrayOf "image_shape" (fun n -> n.GetValue<int>())
          Mean = arrayOf "mean" (fun n -> n.GetValue<float>())
          Std = arrayOf "std" (fun n -> n.GetValue<float>())
          History = node["history"].AsArray() |> Seq.map RunFiles.epochOfJson |> List.ofSeq
          Threads = (match node["threads"] with null -> 0 | n -> n.GetValue<int>()) }
        |> fun state ->
            // A model is rebuilt from these: absurd values must be refused here, not inside libtorch.
            let shape = state.ImageShape
            if shape.Length <> 3 || shape |> Array.exists (fun v -> v < 1) || shape[0] > 4 || shape[1] > 8192 || shape[2] > 8192 then
                raise (BakeException $"{path}: malformed checkpoint state: image_shape {shape} is not C×H×W with C in 1..4 and H, W in 1..8192")
            if state.Classes.Length < 1 then raise (BakeException $"{path}: malformed checkpoint state: no classes")
            if state.Mean.Length <> shape[0] || state.Std.Length <> shape[0] || state.Std |> Array.exists (fun s -> not (s > 0.0)) then
                raise (BakeException $"{path}: malformed checkpoint state: mean and std must have one entry per channel ({shape[0]}), std > 0")
            state

    /// <summary>Writes a checkpoint folder named <paramref name="name"/> (or, when a folder of that name exists, e.g. a
    /// resumed run stopped again before its first step, <c>name_2</c>, <c>name_3</c>, …: an existing checkpoint is never
    /// removed before its replacement is complete) and points <c>&lt;pointer&gt;.json</c> at it; then deletes the
    /// folders no pointer names any more. So <c>last.json</c> and <c>best.json</c> always name a complete checkpoint.</summary>
    [<CompiledName("Save")>]
    let save (runDir: string, name: string, pointers: string list, model: Classifier, optimizer: torch.optim.Optimizer, carried: CarriedState, state: CheckpointState) : string =
        let root = folder runDir
        Directory.CreateDirectory root |> ignore
        let temp = Path.Combine(root, $".{name}.{Guid.NewGuid():N}.tmp")
        let final =
            Seq.append [ name ] (Seq.initInfinite (fun k -> $"{name}_{k + 2}"))
            |> Seq.map (fun n -> Path.Combine(root, n))
            |> Seq.find (Directory.Exists >> not)
        let written = Path.GetFileName final
        try
            Directory.CreateDirectory temp |> ignore
            Weights.saveSafetensors (model, Path.Combine(temp, "model.safetensors"))
            // The file holds the standard layout (TorchSharp writes contiguous tensors only); a channels-last
            // optimizer is laid out again afterwards, with the same values.
            match optimizer with
            | :? TorchSharp.Modules.SGD as sgd when model.ChannelsLast ->
                MemoryFormat.applyToOptimizer (sgd, false)
                try (optimizer :?> TorchSharp.Modules.OptimizerHelper).save_state_dict (Path.Combine(temp, "optimizer.bin"))
                finally MemoryFormat.applyToOptimizer (sgd, true)
            | _ -> (optimizer :?> TorchSharp.Modules.OptimizerHelper).save_state_dict (Path.Combine(temp, "optimizer.bin"))
            if not (isNull carried) && carried.Tensors.Count > 0 then
                let tensors = Collections.Generic.Dictionary<string, torch.Tensor>()
                for pair in carried.Tensors do tensors[pair.Key] <- pair.Value
                Files.writeAtomic (Path.Combine(temp, MethodStateFile)) (fun stream -> TorchSharp.PyBridge.Safetensors.SaveStateDict(stream, tensors, true))
            Files.writeAllTextAtomic (Path.Combine(temp, "state.json")) ((stateJson state).ToJsonString(Text.Json.JsonSerializerOptions(WriteIndented = true)))
            Directory.Move(temp, final)
        with e ->
            // Whatever failed (the disk, or a writer throwing BakeException), no temporary folder is left behind.
            (try Directory.Delete(temp, true) with _ -> ())
            match e with
            | :? IOException | :? UnauthorizedAccessException -> raise (BakeException($"cannot write checkpoint {final}: {e.Message}", e))
            | _ -> reraise ()
        for pointer in pointers do
            Files.writeAllTextAtomic (Path.Combine(root, pointer + ".json")) (JsonObject([ Collections.Generic.KeyValuePair<string, JsonNode>("folder", JsonValue.Create written) ]).ToJsonString())
        // Keep only the folders that a pointer names.
        let named =
            Directory.GetFiles(root, "*.json")
            |> Array.choose (fun p -> try Some(pointedFolder p) with _ -> None)
            |> Set.ofArray
        for dir in Directory.GetDirectories root do
            let n = Path.GetFileName dir
            if not (n.StartsWith ".") && not (named.Contains n) then Directory.Delete(dir, true)
        final

    /// <summary>The checkpoint folder a pointer (<c>last</c> or <c>best</c>) names in a run directory, or a checkpoint
    /// folder given directly.</summary>
    [<CompiledName("Resolve")>]
    let resolve (path: string, pointer: string) : string option =
        let direct = Path.Combine(path, "state.json")
        if File.Exists direct then Some path
        else
            let pointerFile = Path.Combine(folder path, pointer + ".json")
            if File.Exists pointerFile then
                let name = pointedFolder pointerFile
                Some(Path.Combine(folder path, name))
            else None

    /// <summary>The checkpoint folder meant by a path: the folder itself, or for a run directory its last checkpoint
    /// (the final model of a finished run; pass <c>checkpoints/&lt;folder&gt;</c> for another one).</summary>
    /// <exception cref="T:Bake.Core.BakeException">There is no checkpoint there.</exception>
    [<CompiledName("OfPath")>]
    let ofPath (path: string) : string =
        match resolve (path, "last") with
        | Some checkpoint -> checkpoint
        | None -> raise (BakeException $"{path}: no Bake checkpoint (expected a checkpoint folder with state.json or a run directory with checkpoints/last.json)")

    /// <summary>Reads a checkpoint's state.</summary>
    [<CompiledName("ReadState")>]
    let readState (checkpoint: string) : CheckpointState =
        let path = Path.Combine(checkpoint, "state.json")
        if not (File.Exists path) then raise (BakeException $"{checkpoint}: no state.json (not a Bake checkpoint folder)")
        try stateOf path (JsonNode.Parse(File.ReadAllText path))
        with
        | :? Text.Json.JsonException as e -> raise (BakeException($"{path}: invalid JSON: {e.Message}", e))
        | :? InvalidOperationException | :? NullReferenceException | :? FormatException as e ->
            raise (BakeException($"{path}: malformed checkpoint state: {e.Message}", e))

    /// <summary>Loads the weights (and optimizer state, when given) of a checkpoint folder.</summary>
    [<CompiledName("Load")>]
    let load (checkpoint: string, model: Classifier, optimizer: torch.optim.Optimizer option) : unit =
        Weights.load (model, Path.Combine(checkpoint, "model.safetensors"))
        optimizer
        |> Option.iter (fun o ->
            let path = Path.Combine(checkpoint, "optimizer.bin")
            if not (File.Exists path) then raise (BakeException $"{path}: missing (a checkpoint holds the optimizer's state to resume from)")
            try (o :?> TorchSharp.Modules.OptimizerHelper).load_state_dict path
            with
            | :? BakeException -> reraise ()
            | e -> raise (BakeException($"{path}: the optimizer state cannot be read (truncated or not written by Bake): {e.Message}", e)))

    /// <summary>Loads a checkpoint's carried method tensors into <paramref name="carried"/> (nothing when the
    /// checkpoint has none), on <paramref name="device"/>.</summary>
    [<CompiledName("LoadMethodState")>]
    let loadMethodState (checkpoint: string, carried: CarriedState, device: torch.Device) : unit =
        let path = Path.Combine(checkpoint, MethodStateFile)
        if File.Exists path then
            for pair in Weights.read path do
                if pair.Value.device = device then carried.Set(pair.Key, pair.Value)
                else
                    carried.Set(pair.Key, pair.Value.``to`` device)
                    pair.Value.Dispose()

    /// <summary>The run directory a checkpoint folder belongs to (<c>runDir/checkpoints/&lt;name&gt;</c>).</summary>
    [<CompiledName("RunDirectory")>]
    let runDirectory (checkpoint: string) : string = Path.GetFullPath(Path.Combine(checkpoint, "..", ".."))

    /// <summary>A checkpoint's state and its model with the checkpoint's weights, in eval mode on the CPU, laid out
    /// channels-last (faster inference; docs/performance.md). The caller owns (and disposes) the model.</summary>
    /// <exception cref="T:Bake.Core.BakeException">The state or the weights cannot be read or do not fit.</exception>
    [<CompiledName("LoadModel")>]
    let loadModel (checkpoint: string) : CheckpointState * Classifier =
        let state = readState checkpoint
        let model = Models.create (state.Model, state.Classes.Length, state.ImageShape[0], state.ImageShape[1])
        try
            load (checkpoint, model, None)
            Classifier.useChannelsLast (model, true)
            model.eval ()
            state, model
        with _ ->
            model.Dispose()
            reraise ()

    /// <summary>Refuses a dataset whose class count differs from the checkpoint's: its labels would not match the
    /// model's logits.</summary>
    /// <exception cref="T:Bake.Core.BakeException">The class counts differ; the message names both.</exception>
    [<CompiledName("RequireSameClasses")>]
    let requireSameClasses (checkpoint: string, state: CheckpointState, datasetSpec: string, dataset: Data.Dataset) : unit =
        if dataset.Classes.Length <> state.Classes.Length then
            raise (BakeException $"dataset {datasetSpec} has {dataset.Classes.Length} classes but the checkpoint {checkpoint} was trained on {state.Classes.Length}")

    /// <summary>Writes a checkpoint's weights (state dict, torchvision names) for PyTorch or any safetensors reader,
    /// or its eval-mode graph for ONNX Runtime (see <see cref="T:Bake.Core.Export.OnnxExport"/>), atomically.</summary>
    /// <param name="path">A checkpoint folder or a run directory (its last checkpoint, see <see cref="M:Bake.Core.Checkpoints.OfPath(System.String)"/>).</param>
    /// <param name="format"><c>safetensors</c>, <c>pth</c> (a <c>torch.save</c> state dict) or <c>onnx</c> (opset 17,
    /// input <c>images</c> normalised as in evaluation, output <c>logits</c>, classes and normalisation in the metadata).</param>
    /// <param name="out">The file to write; None: <c>&lt;model&gt;-&lt;checkpoint&gt;.&lt;format&gt;</c> in the current
    /// directory.</param>
    /// <param name="onnxFeatures">ONNX only: also output <c>features</c>, the pooled penultimate features.</param>
    /// <returns>The full path written, and the checkpoint's state (for its classes).</returns>
    /// <exception cref="T:Bake.Core.UsageException">An unknown format, or an output extension that contradicts it.</exception>
    /// <exception cref="T:Bake.Core.BakeException">No checkpoint, or the file cannot be written.</exception>
    [<CompiledName("Export")>]
    let exportWith (path: string, format: string, out: string option, onnxFeatures: bool) : string * CheckpointState =
        let format = if isNull format then "" else format.Trim().ToLowerInvariant()
        let extensions =
            match format with
            | "safetensors" -> [ ".safetensors" ]
            | "pth" -> [ ".pth"; ".pt" ]
            | "onnx" -> [ ".onnx" ]
            | other -> raise (UsageException $"unknown export format '{other}': expected safetensors, pth or onnx")
        if onnxFeatures && format <> "onnx" then raise (UsageException($"features: only the onnx format has a features output, not {format}", "features"))
        out
        |> Option.iter (fun file ->
            let extension = Path.GetExtension(file).ToLowerInvariant()
            if not (List.contains extension extensions) then
                let expected = String.Join(" or ", extensions)
                let article = if format = "onnx" then "an" else "a"
                raise (UsageException($"{file}: {article} {format} file should end in {expected}", "out")))
        let checkpoint = ofPath path
        let state, model = loadModel checkpoint
        use model = model
        let target =
            out
            |> Option.defaultWith (fun () -> $"{state.Model}-{Path.GetFileName(Path.TrimEndingDirectorySeparator checkpoint)}{extensions.Head}")
            |> Path.GetFullPath
        match format with
        | "safetensors" -> Weights.saveSafetensors (model, target)
        | "onnx" ->
            let info: Export.OnnxModelInfo =
                { Model = state.Model; Classes = state.Classes; InputShape = Export.OnnxExport.inputShapeOf state.ImageShape; Mean = state.Mean; Std = state.Std }
            Export.OnnxExport.write (model, info, onnxFeatures, target)
        | _ -> Weights.savePyTorch (model, target)
        target, state

    /// <summary>The weights or graph of a checkpoint, without the ONNX features output; see
    /// <see cref="M:Bake.Core.Checkpoints.Export(System.String,System.String,Microsoft.FSharp.Core.FSharpOption{System.String},System.Boolean)"/>.</summary>
    [<CompiledName("Export")>]
    let export (path: string, format: string, out: string option) : string * CheckpointState = exportWith (path, format, out, false)
