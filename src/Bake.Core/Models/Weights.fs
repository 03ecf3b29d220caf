namespace Bake.Core

open System
open System.Collections
open System.Collections.Generic
open System.IO
open System.Text.RegularExpressions
open TorchSharp
open TorchSharp.PyBridge

/// <summary>Parameter names of the official BAKE ImageNet code (a pycls fork) translated to torchvision's, so its
/// checkpoints load into Bake's torchvision-named models.</summary>
/// <remarks>Formats recognised from the keys: pycls AnyNet ResNet/ResNeXt (<c>stem.conv</c>, <c>s1.b1.f.a</c>,
/// <c>s1.b1.proj</c>, <c>head.fc</c>), pycls EfficientNet (<c>s1.b1.dwise</c>, <c>s1.b1.se.f_ex.0</c>,
/// <c>head.conv</c>) and BAKE's MobileNetV2 (flat <c>features.N.conv.K</c>, <c>classifier.weight</c>).</remarks>
module internal PyclsNames =

    let private rewrite (rules: (string * (Match -> string)) list) (key: string) =
        rules
        |> List.tryPick (fun (pattern, replacement) ->
            let m = Regex.Match(key, pattern)
            if m.Success then Some(replacement m) else None)
        |> Option.defaultValue key

    let private block (m: Match) (stage: int) (position: int) =
        $"{int m.Groups[stage].Value}.{int m.Groups[position].Value - 1}"

    /// <summary>AnyNet (ResStemIN, res_basic_block / res_bottleneck_block, AnyHead) to torchvision ResNet.</summary>
    let private anynet =
        let parts = dict [ "a", "conv1"; "a_bn", "bn1"; "b", "conv2"; "b_bn", "bn2"; "c", "conv3"; "c_bn", "bn3" ]
        rewrite [
            @"^stem\.conv\.(\w+)$", fun m -> $"conv1.{m.Groups[1].Value}"
            @"^stem\.bn\.(\w+)$", fun m -> $"bn1.{m.Groups[1].Value}"
            @"^s(\d+)\.b(\d+)\.proj\.(\w+)$", fun m -> $"layer{block m 1 2}.downsample.0.{m.Groups[3].Value}"
            @"^s(\d+)\.b(\d+)\.bn\.(\w+)$", fun m -> $"layer{block m 1 2}.downsample.1.{m.Groups[3].Value}"
            @"^s(\d+)\.b(\d+)\.f\.(a|a_bn|b|b_bn|c|c_bn)\.(\w+)$",
            fun m -> $"layer{block m 1 2}.{parts[m.Groups[3].Value]}.{m.Groups[4].Value}"
            @"^head\.fc\.(\w+)$", fun m -> $"fc.{m.Groups[1].Value}"
        ]

    /// <summary>pycls EffNet to torchvision EfficientNet; a block's layer indices shift by one when it has an
    /// expansion conv (<c>exp</c>), which only the keys tell.</summary>
    let private effnet (keys: ISet<string>) =
        let expanded (m: Match) = keys.Contains($"s{m.Groups[1].Value}.b{m.Groups[2].Value}.exp.weight")
        let inBlock (m: Match) (index: int) (rest: string) =
            let shift = if expanded m then 1 else 0
            $"features.{block m 1 2}.block.{index + shift}.{rest}"
        let tail (m: Match) = m.Groups[3].Value
        rewrite [
            @"^stem\.conv\.(\w+)$", fun m -> $"features.0.0.{m.Groups[1].Value}"
            @"^stem\.bn\.(\w+)$", fun m -> $"features.0.1.{m.Groups[1].Value}"
            @"^s(\d+)\.b(\d+)\.exp\.(\w+)$", fun m -> $"features.{block m 1 2}.block.0.0.{tail m}"
            @"^s(\d+)\.b(\d+)\.exp_bn\.(\w+)$", fun m -> $"features.{block m 1 2}.block.0.1.{tail m}"
            @"^s(\d+)\.b(\d+)\.dwise\.(\w+)$", fun m -> inBlock m 0 $"0.{tail m}"
            @"^s(\d+)\.b(\d+)\.dwise_bn\.(\w+)$", fun m -> inBlock m 0 $"1.{tail m}"
            @"^s(\d+)\.b(\d+)\.se\.f_ex\.0\.(\w+)$", fun m -> inBlock m 1 $"fc1.{tail m}"
            @"^s(\d+)\.b(\d+)\.se\.f_ex\.2\.(\w+)$", fun m -> inBlock m 1 $"fc2.{tail m}"
            @"^s(\d+)\.b(\d+)\.lin_proj\.(\w+)$", fun m -> inBlock m 2 $"0.{tail m}"
            @"^s(\d+)\.b(\d+)\.lin_proj_bn\.(\w+)$", fun m -> inBlock m 2 $"1.{tail m}"
            @"^head\.conv\.(\w+)$", fun m -> $"features.8.0.{m.Groups[1].Value}"
            @"^head\.conv_bn\.(\w+)$", fun m -> $"features.8.1.{m.Groups[1].Value}"
            @"^head\.fc\.(\w+)$", fun m -> $"classifier.1.{m.Groups[1].Value}"
        ]

    /// <summary>BAKE's MobileNetV2 (one flat Sequential per block: conv, BN, ReLU6, …) to torchvision's nested one.</summary>
    let private mobilenet (keys: ISet<string>) =
        // Flat index -> torchvision path, for blocks with (t ≠ 1) and without (t = 1) the expansion conv.
        let expandedPath = dict [ 0, "0.0"; 1, "0.1"; 3, "1.0"; 4, "1.1"; 6, "2"; 7, "3" ]
        let plainPath = dict [ 0, "0.0"; 1, "0.1"; 3, "1"; 4, "2" ]
        rewrite [
            @"^features\.(\d+)\.conv\.(\d+)\.(\w+)$",
            fun m ->
                let feature = m.Groups[1].Value
                let paths = if keys.Contains($"features.{feature}.conv.6.weight") then expandedPath else plainPath
                match paths.TryGetValue(int m.Groups[2].Value) with
                | true, path -> $"features.{feature}.conv.{path}.{m.Groups[3].Value}"
                | false, _ -> m.Value
            @"^classifier\.(\w+)$", fun m -> $"classifier.1.{m.Groups[1].Value}"
        ]

    /// <summary>The format of a state dict's keys, and the renaming to torchvision's names (identity when the keys
    /// are already torchvision's or Bake's).</summary>
    let translation (keys: ISet<string>) : string * (string -> string) =
        let any (prefix: string) = keys |> Seq.exists (fun key -> key.StartsWith(prefix, StringComparison.Ordinal))
        if keys.Contains "stem.conv.weight" && any "s1.b1.f." then
            "pycls AnyNet (ResNet/ResNeXt)", anynet
        elif keys.Contains "stem.conv.weight" && any "s1.b1.dwise." then
            "pycls EfficientNet", effnet keys
        elif keys.Contains "classifier.weight" && keys.Contains "features.1.conv.0.weight" then
            "BAKE MobileNetV2", mobilenet keys
        else
            "PyTorch state dict", id

/// <summary>Model weights in PyTorch's formats (TorchSharp.PyBridge): safetensors and <c>torch.save</c> state dicts
/// with torchvision's parameter names, and the official pycls/BAKE checkpoints.</summary>
/// <remarks>Loading copies values into the model's existing tensors under no-grad (converting dtype and device as
/// needed), so the model stays where it is. Writes are atomic (temporary file, then rename).</remarks>
[<RequireQualifiedAccess>]
module Weights =

    /// <summary>How many keys an error message lists before "…".</summary>
    let private listed = 5

    let private preview (items: string seq) =
        let all = List.ofSeq items
        let shown = all |> List.truncate listed |> String.concat ", "
        if all.Length > listed then $"{shown}, … ({all.Length} in all)" else shown

    /// <summary>The model's state dict, in registration order, as detached, contiguous CPU tensors. Call inside a
    /// dispose scope: the handles created here are temporaries.</summary>
    let private exportable (model: torch.nn.Module) : (string * torch.Tensor) list =
        [ for KeyValue(key, value) in model.state_dict () -> key, value.detach().cpu().contiguous () ]

    let private disposeAll (tensors: torch.Tensor seq) =
        for tensor in tensors do
            tensor.Dispose()

    /// <summary>Writes the model's state dict (parameters and buffers, torchvision names) as a safetensors file.</summary>
    /// <exception cref="T:Bake.Core.BakeException">The file cannot be written.</exception>
    [<CompiledName("SaveSafetensors")>]
    let saveSafetensors (model: torch.nn.Module, path: string) : unit =
        use _ = torch.NewDisposeScope()
        let dictionary = Dictionary<string, torch.Tensor>()
        for key, value in exportable model do
            dictionary[key] <- value
        Files.writeAtomic path (fun stream -> Safetensors.SaveStateDict(stream, dictionary, true))

    /// <summary>Writes the model's state dict as a PyTorch file that <c>torch.load</c> reads (zip format) and
    /// <c>model.load_state_dict</c> accepts, keys in registration order.</summary>
    /// <exception cref="T:Bake.Core.BakeException">The file cannot be written.</exception>
    [<CompiledName("SavePyTorch")>]
    let savePyTorch (model: torch.nn.Module, path: string) : unit =
        use _ = torch.NewDisposeScope()
        let dictionary = Specialized.OrderedDictionary()
        for key, value in exportable model do
            dictionary.Add(key, value)
        Files.writeAtomic path (fun stream -> PyTorchPickler.PickleStateDict(stream, dictionary, true))

    /// <summary>The tensors of an unpickled PyTorch file: the state dict itself, or the <c>model_state</c>
    /// (pycls/BAKE) or <c>state_dict</c> entry of a checkpoint.</summary>
    let private stateDictOf (path: string) (root: Hashtable) : Dictionary<string, torch.Tensor> =
        let table =
            [ "model_state"; "state_dict" ]
            |> List.tryPick (fun key ->
                match root[key] with
                | :? Hashtable as inner -> Some inner
                | _ -> None)
            |> Option.defaultValue root
        let tensors = Dictionary<string, torch.Tensor>()
        let others = ResizeArray<string>()
        for entry in table |> Seq.cast<DictionaryEntry> do
            match entry.Key, entry.Value with
            | (:? string as key), (:? torch.Tensor as tensor) -> tensors[key] <- tensor
            | key, _ -> others.Add(string key)
        if tensors.Count = 0 then
            raise (BakeException($"{path} holds no tensors: it is neither a state dict nor a checkpoint with 'model_state' or 'state_dict' (keys: {preview (Seq.sort others)})"))
        tensors

    /// <summary>The tensors of a weights file, by the file's own keys.</summary>
    let private readTensors (full: string) (extension: string) : Dictionary<string, torch.Tensor> =
        try
            match extension with
            | ".safetensors" ->
                use stream = File.OpenRead full
                Safetensors.LoadStateDict(stream, false)
            | ".pth" | ".pt" | ".pyth" | ".bin" ->
                use stream = File.OpenRead full
                let head = Array.zeroCreate<byte> 2
                let count = stream.Read(head, 0, 2)
                stream.Position <- 0L
                if count = 2 && head[0] = 0x80uy then
                    // A pickle protocol header: torch.save's legacy (non-zip) format.
                    raise (BakeException($"{full} is in torch.save's legacy format (PyTorch < 1.6 or _use_new_zipfile_serialization=False), which Bake cannot read; re-save it with torch.save in a current PyTorch"))
                if count < 2 || head[0] <> byte 'P' || head[1] <> byte 'K' then
                    raise (BakeException($"{full} is not a readable PyTorch (torch.save zip) weights file: it does not start with a zip header"))
                stateDictOf full (PyTorchUnpickler.UnpickleStateDict(stream, false))
            | other -> raise (BakeException($"{full}: unknown weights format '{other}' (expected .safetensors, .pth, .pt, .pyth or .bin)"))
        with
        | :? BakeException -> reraise ()
        | e ->
            let kind = if extension = ".safetensors" then "safetensors" else "PyTorch (torch.save zip)"
            raise (BakeException($"{full} is not a readable {kind} weights file (truncated or corrupt?): {e.Message}", e))

    /// <summary>Reads the tensors of a weights file: <c>.safetensors</c>, or <c>.pth</c>/<c>.pt</c>/<c>.pyth</c>/<c>.bin</c>
    /// (a <c>torch.save</c> state dict, or a pycls/BAKE checkpoint <c>{model_state, …}</c> or one with
    /// <c>state_dict</c>). A leading <c>module.</c> (DataParallel/DDP) is stripped from every key.</summary>
    /// <returns>Fresh CPU tensors by key, owned by the caller. Every other tensor in the file (e.g. a checkpoint's
    /// optimizer state) is freed before this returns.</returns>
    /// <exception cref="T:Bake.Core.BakeException">The file is missing, unreadable, of an unknown kind or corrupt.</exception>
    [<CompiledName("Read")>]
    let read (path: string) : Dictionary<string, torch.Tensor> =
        let full = Path.GetFullPath path
        if not (File.Exists full) then raise (BakeException($"weights file not found: {full}"))
        let raw =
            // The readers' other tensors and temporaries are freed with this scope; the state dict moves out.
            use _ = torch.NewDisposeScope()
            let tensors = readTensors full (Path.GetExtension(full).ToLowerInvariant())
            for tensor in tensors.Values do
                tensor.MoveToOuterDisposeScope() |> ignore
            tensors
        let stripped = Dictionary<string, torch.Tensor>()
        for KeyValue(key, tensor) in raw do
            let name = if key.StartsWith("module.", StringComparison.Ordinal) then key.Substring 7 else key
            stripped[name] <- tensor
        stripped

    /// <summary>Loads weights from a file into <paramref name="model"/>, matching by name (see
    /// <see cref="M:Bake.Core.Weights.Read"/> for the formats). pycls/BAKE names (AnyNet ResNets, EfficientNet,
    /// BAKE's MobileNetV2) are translated to torchvision's first. Every parameter and buffer must be present with
    /// the same shape; only <c>num_batches_tracked</c> may be missing (older torchvision files lack it).</summary>
    /// <exception cref="T:Bake.Core.BakeException">The file cannot be read, or its keys or shapes do not fit the model:
    /// the message lists the first missing, unexpected and mismatched keys with both shapes.</exception>
    [<CompiledName("Load")>]
    let load (model: torch.nn.Module, path: string) : unit =
        let loaded = read path
        try
            let format, rename = PyclsNames.translation (HashSet<string>(loaded.Keys))
            let source = Dictionary<string, torch.Tensor>()
            for KeyValue(key, tensor) in loaded do
                source[rename key] <- tensor
            let target = model.state_dict ()
            let missing =
                target.Keys
                |> Seq.filter (fun key -> not (source.ContainsKey key) && not (key.EndsWith(".num_batches_tracked", StringComparison.Ordinal)))
                |> List.ofSeq
            // Sorted: a .pth file's key order is not kept by the unpickler.
            let unexpected = source.Keys |> Seq.filter (fun key -> not (target.ContainsKey key)) |> Seq.sortWith (fun a b -> String.CompareOrdinal(a, b)) |> List.ofSeq
            let mismatched =
                [ for KeyValue(key, value) in target do
                      match source.TryGetValue key with
                      | true, tensor when tensor.shape <> value.shape ->
                          $"{key} (file {Tensors.describe tensor}, model {Tensors.describe value})"
                      | _ -> () ]
            if not (missing.IsEmpty && unexpected.IsEmpty && mismatched.IsEmpty) then
                let problems =
                    [ if not missing.IsEmpty then $"{missing.Length} missing keys: {preview missing}"
                      if not unexpected.IsEmpty then $"{unexpected.Length} unexpected keys: {preview unexpected}"
                      if not mismatched.IsEmpty then $"{mismatched.Length} shape mismatches: {preview mismatched}" ]
                let summary = String.Join("; ", problems)
                raise (
                    BakeException(
                        $"{Path.GetFullPath path} ({format}, {source.Count} tensors) does not fit model {model.GetName()} ({target.Count} tensors): {summary}"
                    )
                )
            use _ = torch.no_grad ()
            for KeyValue(key, value) in target do
                match source.TryGetValue key with
                | true, tensor -> value.copy_ tensor |> ignore
                | _ -> ()
        finally
            disposeAll loaded.Values
