namespace Bake.Core.Export

open System
open System.IO
open System.Text.Json
open Google.Protobuf
open Onnx
open TorchSharp
open TorchSharp.Modules
open Bake.Core
open Bake.Core.Models

/// <summary>What an exported model carries besides its graph: how to feed it and how to read its output.</summary>
[<NoComparison; NoEquality>]
type OnnxModelInfo =
    {
        /// <summary>The registry name of the architecture (e.g. <c>cnn</c>).</summary>
        Model: string
        /// <summary>Class names in label order: logit k is class <c>Classes[k]</c>.</summary>
        Classes: string[]
        /// <summary>The input C, H, W: the image shape after the checkpoint's evaluation transform.</summary>
        InputShape: int[]
        /// <summary>Per-channel mean of the normalisation the input must already have: (pixel/255 − mean) / std.</summary>
        Mean: float[]
        /// <summary>Per-channel std of the normalisation.</summary>
        Std: float[]
    }

/// <summary>ONNX export of Bake models: the eval-mode graph of a registry model (opset 17, IR 8, dynamic batch
/// dimension), built by walking its module tree, since TorchSharp cannot trace a module.</summary>
/// <remarks>
/// <para>The graph has one input <c>images</c> (N×C×H×W float32, already normalised as in evaluation) and the
/// output <c>logits</c> (N×K), optionally followed by <c>features</c> (N×D, the pooled penultimate features). Model
/// metadata (<c>metadata_props</c>) holds <c>bake.model</c>, <c>bake.classes</c>, <c>bake.input_shape</c>,
/// <c>bake.mean</c>, <c>bake.std</c> (JSON values) and <c>bake.preprocessing</c> (a sentence). Initializers are named
/// by their state-dict keys (<c>layer1.0.conv1.weight</c>).</para>
/// <para>Supported modules are the ones the registry uses: Conv2d, BatchNorm2d (running statistics), ReLU, ReLU6,
/// SiLU, max and average pooling, global average pooling, Linear, Dropout and stochastic depth (identities in
/// evaluation), residual additions, dense concatenations and squeeze-excitation, inside the registry's blocks.
/// Anything else is a <see cref="T:Bake.Core.BakeException"/> naming the module's path and type.</para>
/// </remarks>
[<RequireQualifiedAccess>]
module OnnxExport =

    /// <summary>The ONNX operator set the graph uses.</summary>
    [<Literal>]
    let Opset = 17L

    /// <summary>The ONNX IR version written (the one opset 17 came with).</summary>
    [<Literal>]
    let IrVersion = 8L

    let private supported =
        "Conv2d, BatchNorm2d, ReLU, ReLU6, SiLU, MaxPool2d, AvgPool2d, Linear, Dropout and the registry's blocks"

    let private unsupported (path: string) (m: torch.nn.Module) =
        let what = if path = "" then "the model" else $"module '{path}'"
        BakeException(
            $"ONNX export: {what} of type {m.GetType().Name} is not supported (supported: {supported}); "
            + "models outside the registry cannot be exported"
        )

    let private join (path: string) (name: string) = if path = "" then name else $"{path}.{name}"

    let private children (m: torch.nn.Module) =
        m.named_children () |> Seq.map (fun struct (name, child) -> name, child) |> List.ofSeq

    let private child (path: string) (m: torch.nn.Module) (name: string) : torch.nn.Module =
        match children m |> List.tryFind (fun (n, _) -> n = name) with
        | Some(_, c) -> c
        | None -> raise (BakeException $"ONNX export: module '{path}' ({m.GetType().Name}) has no child '{name}'")

    let private tryChild (m: torch.nn.Module) (name: string) =
        children m |> List.tryFind (fun (n, _) -> n = name) |> Option.map snd

    let private orDefault (fallback: int64[]) (values: int64[]) =
        if isNull values || values.Length = 0 then fallback else values

    /// <summary>A square 2-D window parameter: one value repeated, or the two given.</summary>
    let private pair (values: int64[]) = if values.Length = 1 then [| values[0]; values[0] |] else values

    let private conv (g: OnnxGraphBuilder) (path: string) (c: Conv2d) (input: string) =
        if c.padding_mode <> PaddingModes.Zeros then raise (BakeException $"ONNX export: convolution '{path}' pads with {c.padding_mode}; only zero padding is supported")
        if c.padding_type.HasValue || isNull c.padding then raise (BakeException $"ONNX export: convolution '{path}' uses symbolic padding; only explicit padding is supported")
        let kernel = pair c.kernel_size
        let padding = pair c.padding
        let weight = g.Weight(join path "weight", c.weight)
        let inputs = if isNull c.bias then [ input; weight ] else [ input; weight; g.Weight(join path "bias", c.bias) ]
        g.Node(
            "Conv", path, inputs,
            [ OnnxProto.ints "kernel_shape" kernel
              OnnxProto.ints "strides" (pair (orDefault [| 1L |] c.stride))
              OnnxProto.ints "pads" [ padding[0]; padding[1]; padding[0]; padding[1] ]
              OnnxProto.ints "dilations" (pair (orDefault [| 1L |] c.dilation))
              OnnxProto.int "group" c.groups ]
        )

    let private batchNorm (g: OnnxGraphBuilder) (path: string) (bn: BatchNorm2d) (input: string) =
        if isNull bn.running_mean || isNull bn.running_var then raise (BakeException $"ONNX export: BatchNorm '{path}' has no running statistics")
        use _ = torch.NewDisposeScope()
        let scale = if isNull bn.weight then torch.ones_like bn.running_mean else bn.weight :> torch.Tensor
        let shift = if isNull bn.bias then torch.zeros_like bn.running_mean else bn.bias :> torch.Tensor
        let inputs =
            [ input
              g.Weight(join path "weight", scale)
              g.Weight(join path "bias", shift)
              g.Weight(join path "running_mean", bn.running_mean)
              g.Weight(join path "running_var", bn.running_var) ]
        g.Node("BatchNormalization", path, inputs, [ OnnxProto.float "epsilon" (float32 bn.eps) ])

    let private relu (g: OnnxGraphBuilder) (path: string) (input: string) = g.Node("Relu", path, [ input ], [])

    let private activation (g: OnnxGraphBuilder) (path: string) (kind: string) (input: string) =
        match kind with
        | "ReLU" -> relu g path input
        | "ReLU6" -> g.Node("Clip", path, [ input; g.Scalar(join path "min", 0.0f); g.Scalar(join path "max", 6.0f) ], [])
        | "SiLU" ->
            let gate = g.Node("Sigmoid", join path "sigmoid", [ input ], [])
            g.Node("Mul", path, [ input; gate ], [])
        | other -> raise (BakeException $"ONNX export: activation '{path}' ({other}) is not supported")

    let private window (kernel: int64[]) (stride: int64[]) (padding: int64[]) =
        let kernel = pair kernel
        let padding = pair (orDefault [| 0L |] padding)
        [ OnnxProto.ints "kernel_shape" kernel
          OnnxProto.ints "strides" (pair (orDefault kernel stride))
          OnnxProto.ints "pads" [ padding[0]; padding[1]; padding[0]; padding[1] ] ]

    let private maxPool (g: OnnxGraphBuilder) (path: string) (pool: MaxPool2d) (input: string) =
        let dilations = pair (orDefault [| 1L |] pool.dilation)
        g.Node(
            "MaxPool", path, [ input ],
            window pool.kernel_size pool.stride pool.padding
            @ [ OnnxProto.ints "dilations" dilations; OnnxProto.int "ceil_mode" (if pool.ceil_mode then 1L else 0L) ]
        )

    /// <summary>PyTorch's avg_pool2d defaults: count_include_pad true, floor mode.</summary>
    let private averagePool (g: OnnxGraphBuilder) (path: string) (kernel: int64[]) (stride: int64[]) (padding: int64[]) (ceil: bool) (includePad: bool) (input: string) =
        g.Node(
            "AveragePool", path, [ input ],
            window kernel stride padding
            @ [ OnnxProto.int "ceil_mode" (if ceil then 1L else 0L); OnnxProto.int "count_include_pad" (if includePad then 1L else 0L) ]
        )

    let private linear (g: OnnxGraphBuilder) (path: string) (fc: Linear) (input: string) =
        let weight = g.Weight(join path "weight", fc.weight)
        let inputs = if isNull fc.bias then [ input; weight ] else [ input; weight; g.Weight(join path "bias", fc.bias) ]
        g.Node("Gemm", path, inputs, [ OnnxProto.int "transB" 1L ])

    let private add (g: OnnxGraphBuilder) (path: string) (a: string) (b: string) = g.Node("Add", path, [ a; b ], [])

    let private concat (g: OnnxGraphBuilder) (path: string) (inputs: string list) =
        g.Node("Concat", path, inputs, [ OnnxProto.int "axis" 1L ])

    /// <summary>Emits the eval-mode computation of one module on the value <paramref name="input"/>; returns the
    /// name of its result. Mirrors each module's <c>forward</c> (see the model files).</summary>
    let rec private emit (g: OnnxGraphBuilder) (path: string) (m: torch.nn.Module) (input: string) : string =
        let sub name = child path m name
        let run name value = emit g (join path name) (sub name) value
        match m with
        | :? Conv2d as c -> conv g path c input
        | :? BatchNorm2d as bn -> batchNorm g path bn input
        | :? Linear as fc -> linear g path fc input
        | :? MaxPool2d as pool -> maxPool g path pool input
        | :? AvgPool2d as pool ->
            if pool.divisor_override.HasValue then raise (BakeException $"ONNX export: average pooling '{path}' overrides its divisor; not supported")
            averagePool g path pool.kernel_size pool.stride pool.padding pool.ceil_mode pool.count_include_pad input
        | :? Dropout -> input
        | :? Activation as a -> activation g path a.Kind input
        | :? Chain -> children m |> List.fold (fun value (name, c) -> emit g (join path name) c value) input
        | :? PreActBlock ->
            let activated = relu g (join path "relu1") (run "bn1" input)
            let shortcut =
                match tryChild m "shortcut" with
                | Some projection -> emit g (join path "shortcut") projection activated
                | None -> activated
            let hidden = relu g (join path "relu2") (run "bn2" (run "conv1" activated))
            add g (join path "add") (run "conv2" hidden) shortcut
        | :? CifarDenseBottleneck ->
            let a = relu g (join path "relu1") (run "bn1" input)
            let c = relu g (join path "relu2") (run "bn2" (run "conv1" a))
            concat g (join path "cat") [ run "conv2" c; input ]
        | :? CifarTransition ->
            let a = relu g (join path "relu") (run "bn" input)
            averagePool g (join path "pool") [| 2L |] [| 2L |] [| 0L |] false true (run "conv" a)
        | :? BasicBlock ->
            let b = relu g (join path "relu1") (run "bn1" (run "conv1" input))
            residual g path m input (run "bn2" (run "conv2" b))
        | :? BottleneckBlock ->
            let b = relu g (join path "relu1") (run "bn1" (run "conv1" input))
            let d = relu g (join path "relu2") (run "bn2" (run "conv2" b))
            residual g path m input (run "bn3" (run "conv3" d))
        | :? DenseLayer ->
            let a = relu g (join path "relu1") (run "norm1" input)
            let c = relu g (join path "relu2") (run "norm2" (run "conv1" a))
            run "conv2" c
        | :? DenseBlock ->
            children m |> List.fold (fun all (name, layer) -> concat g (join path $"{name}.cat") [ all; emit g (join path name) layer all ]) input
        | :? InvertedResidual as block ->
            let out = run "conv" input
            if block.Residual then add g (join path "add") out input else out
        | :? MBConv as block ->
            let out = run "block" input
            if block.Residual then add g (join path "add") out input else out
        | :? SqueezeExcitation ->
            let pooled = g.Node("GlobalAveragePool", join path "avgpool", [ input ], [])
            let squeezed = activation g (join path "silu") "SiLU" (run "fc1" pooled)
            let scale = g.Node("Sigmoid", join path "scale", [ run "fc2" squeezed ], [])
            g.Node("Mul", join path "mul", [ input; scale ], [])
        | other -> raise (unsupported path other)

    /// <summary>A residual block's end: <c>relu(out + shortcut)</c>, the shortcut being the optional
    /// <c>downsample</c> child of the input, else the input.</summary>
    and private residual (g: OnnxGraphBuilder) (path: string) (m: torch.nn.Module) (input: string) (out: string) =
        let shortcut =
            match tryChild m "downsample" with
            | Some projection -> emit g (join path "downsample") projection input
            | None -> input
        relu g (join path "relu") (add g (join path "add") out shortcut)

    let private jsonOf (value: obj) = JsonSerializer.Serialize value

    /// <summary>Builds the ONNX model of a classifier in evaluation mode (the model is switched to eval mode and
    /// left there; its weights are copied, not modified).</summary>
    /// <param name="model">A registry model (see <see cref="M:Bake.Core.Models.Models.Create"/>), on any device.</param>
    /// <param name="info">Classes, input shape and normalisation, written to the metadata; the class count must
    /// equal the model's.</param>
    /// <param name="includeFeatures">Also output <c>features</c> (N×D), the pooled penultimate features.</param>
    /// <exception cref="T:Bake.Core.BakeException">A module the exporter does not support; the message names it.</exception>
    /// <exception cref="T:System.ArgumentException">The info does not fit the model.</exception>
    [<CompiledName("Build")>]
    let build (model: Classifier, info: OnnxModelInfo, includeFeatures: bool) : ModelProto =
        if isNull (box model) then nullArg "model"
        if int64 info.Classes.Length <> model.Classes then
            invalidArg "info" $"{info.Classes.Length} class names for a model with {model.Classes} classes"
        if info.InputShape.Length <> 3 then invalidArg "info" $"the input shape must be C, H, W; got {info.InputShape.Length} values"
        let pooled =
            match box model with
            | :? PooledClassifier as p -> p
            | _ -> raise (unsupported "" model)
        model.eval ()
        let g = OnnxGraphBuilder()
        // The graph's input and output names; values inside the graph never take them.
        for reserved in [ "images"; "logits"; "features" ] do
            g.Fresh reserved |> ignore
        let maps = pooled.TrunkLayers |> List.fold (fun value (name, layer) -> emit g name layer value) "images"
        let globalPool = g.Node("GlobalAveragePool", "avgpool", [ maps ], [])
        let features = g.Node("Flatten", "flatten", [ globalPool ], [ OnnxProto.int "axis" 1L ])
        let headName, head = pooled.HeadLayer
        let logits = emit g headName head features
        let graph = GraphProto(Name = info.Model, DocString = $"Bake {info.Model}, evaluation mode")
        graph.Node.AddRange g.Nodes
        graph.Initializer.AddRange g.Initializers
        let shape = info.InputShape |> Array.map int64
        graph.Input.Add(OnnxProto.floatTensor "images" "N" shape "N×C×H×W float32 images, normalised as in evaluation: (pixel/255 − mean) / std per channel")
        // Rename the last values to the public output names with Identity nodes, so node names stay module paths.
        let output (name: string) (value: string) (width: int64) (doc: string) =
            let node = NodeProto(OpType = "Identity", Name = $"{name}_output")
            node.Input.Add value
            node.Output.Add name
            graph.Node.Add node
            graph.Output.Add(OnnxProto.floatTensor name "N" [ width ] doc)
        output "logits" logits model.Classes "N×K logits; softmax gives the class probabilities, in the order of bake.classes"
        if includeFeatures then output "features" features model.FeatureSize "N×D pooled penultimate features (BAKE's affinity input)"
        let classList = String.Join(", ", info.Classes)
        let result =
            ModelProto(
                IrVersion = IrVersion,
                ProducerName = "bake",
                ProducerVersion = (typeof<OnnxModelInfo>.Assembly.GetName().Version.ToString()),
                Graph = graph,
                DocString = $"{info.Model} trained with Bake; classes: {classList}"
            )
        result.OpsetImport.Add(OperatorSetIdProto(Domain = "", Version = Opset))
        let meanText = String.Join(", ", info.Mean |> Array.map (fun v -> v.ToString("R", Globalization.CultureInfo.InvariantCulture)))
        let stdText = String.Join(", ", info.Std |> Array.map (fun v -> v.ToString("R", Globalization.CultureInfo.InvariantCulture)))
        result.MetadataProps.AddRange
            [ OnnxProto.entry "bake.model" info.Model
              OnnxProto.entry "bake.classes" (jsonOf info.Classes)
              OnnxProto.entry "bake.input_shape" (jsonOf info.InputShape)
              OnnxProto.entry "bake.mean" (jsonOf info.Mean)
              OnnxProto.entry "bake.std" (jsonOf info.Std)
              OnnxProto.entry
                  "bake.preprocessing"
                  $"RGB or gray pixels scaled to [0, 1], converted to {info.InputShape[0]} channel(s), resized and center-cropped to {info.InputShape[1]}×{info.InputShape[2]}, then (x − mean) / std per channel with mean [{meanText}] and std [{stdText}]" ]
        result

    /// <summary>Builds the model (see <see cref="M:Bake.Core.Export.OnnxExport.Build"/>) and writes it to
    /// <paramref name="path"/> atomically.</summary>
    /// <exception cref="T:Bake.Core.BakeException">An unsupported module, or the file cannot be written.</exception>
    [<CompiledName("Write")>]
    let write (model: Classifier, info: OnnxModelInfo, includeFeatures: bool, path: string) : unit =
        let proto = build (model, info, includeFeatures)
        Files.writeAtomic path (fun stream -> proto.WriteTo(stream))

    /// <summary>The input C, H, W of a model trained on images of <paramref name="imageShape"/>: the shape after the
    /// evaluation transform (<see cref="M:Bake.Core.Data.Transforms.ForEvaluationOf"/>: 224×224 crops above 64 pixels).</summary>
    [<CompiledName("InputShapeOf")>]
    let inputShapeOf (imageShape: int[]) : int[] =
        if min imageShape[1] imageShape[2] <= 64 then Array.copy imageShape else [| imageShape[0]; 224; 224 |]

    /// <summary>Reads the metadata Bake writes (<c>bake.*</c> keys) from an ONNX file's bytes.</summary>
    /// <exception cref="T:Bake.Core.BakeException">Not an ONNX model, or without Bake's metadata.</exception>
    [<CompiledName("ReadInfo")>]
    let readInfo (path: string) : OnnxModelInfo =
        let proto =
            try ModelProto.Parser.ParseFrom(File.ReadAllBytes path)
            with :? InvalidProtocolBufferException as e -> raise (BakeException($"{path}: not an ONNX model: {e.Message}", e))
        let get key =
            match proto.MetadataProps |> Seq.tryFind (fun e -> e.Key = key) with
            | Some e -> e.Value
            | None -> raise (BakeException $"{path}: no {key} metadata (not exported by Bake)")
        { Model = get "bake.model"
          Classes = JsonSerializer.Deserialize<string[]>(get "bake.classes")
          InputShape = JsonSerializer.Deserialize<int[]>(get "bake.input_shape")
          Mean = JsonSerializer.Deserialize<float[]>(get "bake.mean")
          Std = JsonSerializer.Deserialize<float[]>(get "bake.std") }
