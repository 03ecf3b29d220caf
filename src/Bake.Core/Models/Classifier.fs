namespace Bake.Core.Models

open System
open TorchSharp
open TorchSharp.Modules

/// <summary>A forward pass that keeps both outputs BAKE needs: the pooled penultimate features (for the
/// affinity, Eq. 3) and the logits (for the losses).</summary>
/// <remarks>Both tensors are fresh and owned by the caller; <c>Dispose</c> frees both.</remarks>
[<NoComparison; NoEquality>]
type ClassifierOutput =
    {
        /// <summary>N×D pooled penultimate features, D = <c>FeatureSize</c>. Gradients flow.</summary>
        Features: torch.Tensor
        /// <summary>N×K logits, K = <c>Classes</c>. Gradients flow (through <c>Features</c>).</summary>
        Logits: torch.Tensor
    }

    interface IDisposable with
        member this.Dispose() =
            this.Features.Dispose()
            this.Logits.Dispose()

/// <summary>Every Bake model: a backbone that ends in pooled features and a head that maps them to logits.</summary>
/// <remarks>
/// <para><c>forward</c> returns the logits only, so a <c>Classifier</c> behaves like a torchvision model; use
/// <see cref="M:Bake.Core.Models.ClassifierModule.FeaturesAndLogits"/> for both outputs of one pass.</para>
/// <para>Submodules are registered under exactly the names the reference implementation uses (torchvision, or the
/// official small-scale code for the CIFAR models), so <c>state_dict()</c> keys match PyTorch's, including the
/// BatchNorm buffers <c>running_mean</c>, <c>running_var</c> and <c>num_batches_tracked</c>.</para>
/// <para>Ownership: inputs are never disposed or modified; every output is a fresh tensor.</para>
/// </remarks>
[<AbstractClass>]
type Classifier(name: string) =
    inherit torch.nn.Module<torch.Tensor, torch.Tensor>(name)
    let mutable channelsLast = false

    /// <summary>D, the width of the pooled feature vector.</summary>
    abstract FeatureSize: int64

    /// <summary>K, the number of classes (width of the logits).</summary>
    abstract Classes: int64

    /// <summary>The backbone: N×C×H×W images (float32) to N×D pooled penultimate features (a fresh tensor).</summary>
    abstract Features: images: torch.Tensor -> torch.Tensor

    /// <summary>The head: N×D features to N×K logits (a fresh tensor; <paramref name="features"/> is not modified,
    /// even by dropout).</summary>
    abstract Head: features: torch.Tensor -> torch.Tensor

    /// <summary>True when the model's 4-D parameters and buffers are channels-last (see
    /// <see cref="M:Bake.Core.Models.ClassifierModule.UseChannelsLast(Bake.Core.Models.Classifier,System.Boolean)"/>):
    /// <c>forward</c> and <c>featuresAndLogits</c> then lay their input out channels-last too.</summary>
    member _.ChannelsLast = channelsLast

    member internal _.SetChannelsLast(on: bool) = channelsLast <- on

    /// <summary><c>Features</c> of the images in the model's memory format (a channels-last copy when the model is
    /// channels-last and the images are not; the caller's tensor is never changed).</summary>
    member this.FeaturesInFormat(images: torch.Tensor) : torch.Tensor =
        if channelsLast && not (isNull images) && images.dim () = 4L && not (Bake.Core.MemoryFormat.isChannelsLast images) then
            use laidOut = Bake.Core.MemoryFormat.channelsLast images
            this.Features laidOut
        else this.Features images

    /// <summary>N×K logits, <c>Head(Features images)</c>; the intermediate features are freed.</summary>
    override this.forward(images: torch.Tensor) : torch.Tensor =
        use features = this.FeaturesInFormat images
        this.Head features

/// <summary>Functions over any <see cref="T:Bake.Core.Models.Classifier"/>.</summary>
[<RequireQualifiedAccess>]
[<CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module Classifier =

    /// <summary>One forward pass returning both the pooled features (N×D) and the logits (N×K).</summary>
    /// <param name="model">The model, in whatever mode (train/eval) the caller set.</param>
    /// <param name="images">N×C×H×W images; not modified.</param>
    /// <returns>Fresh tensors with autograd history; dispose the record (or both tensors) when done.</returns>
    [<CompiledName("FeaturesAndLogits")>]
    let featuresAndLogits (model: Classifier, images: torch.Tensor) : ClassifierOutput =
        if isNull (box model) then nullArg "model"
        if isNull images then nullArg "images"
        let features = model.FeaturesInFormat images
        let logits =
            try model.Head features
            with _ ->
                features.Dispose()
                reraise ()
        { Features = features; Logits = logits }

    /// <summary>Lays the model out channels-last (<paramref name="on"/>; PyTorch's
    /// <c>model.to(memory_format=torch.channels_last)</c>) or in the standard layout: every 4-D parameter and buffer
    /// in place, and its input from then on. Values do not change, and state dicts, checkpoints and exports stay in
    /// the standard layout (they are written as contiguous tensors). Call it before building an optimizer.</summary>
    [<CompiledName("UseChannelsLast")>]
    let useChannelsLast (model: Classifier, on: bool) : unit =
        Bake.Core.MemoryFormat.apply (model, on)
        model.SetChannelsLast on

    /// <summary>The number of scalar parameters (trainable or not), as <c>sum(p.numel() for p in
    /// model.parameters())</c> counts them in PyTorch. BatchNorm buffers are not parameters.</summary>
    [<CompiledName("ParameterCount")>]
    let parameterCount (model: torch.nn.Module) : int64 =
        model.parameters () |> Seq.sumBy (fun parameter -> parameter.numel ())

/// <summary>Building blocks shared by the model definitions.</summary>
module internal Layers =

    /// <summary>Runs <paramref name="modules"/> in order. Intermediate results are disposed as soon as the next
    /// module has consumed them; the input is never disposed, and the result is always a fresh handle.</summary>
    let run (modules: torch.nn.Module<torch.Tensor, torch.Tensor> seq) (input: torch.Tensor) : torch.Tensor =
        let mutable current = input
        for layer in modules do
            let next = layer.call current
            if not (Object.ReferenceEquals(current, input)) && not (Object.ReferenceEquals(current, next)) then
                current.Dispose()
            current <- next
        if Object.ReferenceEquals(current, input) then input.alias () else current

    /// <summary>Global average pooling, N×C×H×W to N×C (a fresh tensor).</summary>
    let globalAveragePool (maps: torch.Tensor) : torch.Tensor =
        use pooled = torch.nn.functional.adaptive_avg_pool2d (maps, 1L)
        pooled.flatten 1L

    /// <summary>A 2-D convolution without bias, "same" padding for odd kernels, as torchvision builds them.</summary>
    let conv (inputs: int64) (outputs: int64) (kernel: int64) (stride: int64) (groups: int64) : Conv2d =
        torch.nn.Conv2d(inputs, outputs, kernel, stride = stride, padding = (kernel - 1L) / 2L, groups = groups, bias = false)

/// <summary>Named submodules applied in order, like <c>torch.nn.Sequential</c>: each name becomes one segment
/// of the state-dict keys ("0", "1", … for positional children, or "conv0", "norm0", … for named ones).</summary>
/// <remarks>Unlike TorchSharp's <c>Sequential</c>, it never disposes a tensor that a module returned
/// unchanged (in-place activations), and it returns a fresh handle even when it has no children.</remarks>
type internal Chain(name: string, children: (string * torch.nn.Module<torch.Tensor, torch.Tensor>) list) as this =
    inherit torch.nn.Module<torch.Tensor, torch.Tensor>(name)
    let layers = children |> List.map snd
    do
        for childName, child in children do
            this.register_module (childName, child)

    /// <summary>Children named "0", "1", … in order (PyTorch's positional <c>Sequential</c> names).</summary>
    new(name: string, children: torch.nn.Module<torch.Tensor, torch.Tensor> list) =
        new Chain(name, children |> List.mapi (fun index child -> string index, child))

    override _.forward(input: torch.Tensor) : torch.Tensor = Layers.run layers input

/// <summary>Element-wise activations as modules, so they appear as children like torchvision's (they hold no
/// parameters). In-place variants are only used where the input is a fresh intermediate result.</summary>
type internal Activation(kind: string, inplace: bool) =
    inherit torch.nn.Module<torch.Tensor, torch.Tensor>(kind)

    /// <summary>"ReLU", "ReLU6" or "SiLU" (read by the ONNX exporter).</summary>
    member internal _.Kind = kind

    override _.forward(input: torch.Tensor) : torch.Tensor =
        match kind with
        | "ReLU" -> torch.nn.functional.relu (input, inplace)
        | "ReLU6" -> torch.nn.functional.relu6 (input, inplace)
        | "SiLU" -> torch.nn.functional.silu (input, inplace)
        | other -> invalidOp $"unknown activation {other}"

/// <summary>Registers named children in order.</summary>
module internal Children =

    let register (owner: torch.nn.Module) (children: (string * torch.nn.Module) list) =
        for name, child in children do
            owner.register_module (name, child)

/// <summary>The body of a classifier: top-level modules run in order (their names are the first segment of the
/// state-dict keys), ending in N×Width×H×W maps.</summary>
[<NoComparison; NoEquality>]
type internal Trunk =
    { Layers: (string * torch.nn.Module<torch.Tensor, torch.Tensor>) list
      Width: int64 }

/// <summary>Heads: pooled features (N×width) to logits (N×classes).</summary>
module internal Heads =

    let linear (width: int64) (classes: int64) : torch.nn.Module<torch.Tensor, torch.Tensor> = torch.nn.Linear(width, classes)

    /// <summary>torchvision's MobileNet/EfficientNet classifier: "0" Dropout (not in place: the features are the
    /// caller's), "1" Linear.</summary>
    let dropoutLinear (probability: float) (width: int64) (classes: int64) : torch.nn.Module<torch.Tensor, torch.Tensor> =
        new Chain("classifier", [ torch.nn.Dropout(probability) :> torch.nn.Module<_, _>; torch.nn.Linear(width, classes) ])

/// <summary>The layout every Bake model shares: a trunk of named top-level modules, global average pooling of its
/// last maps to the features, and a head (named as in the reference implementation) to the logits.</summary>
type PooledClassifier internal (name: string, trunk: Trunk, headName: string, head: int64 -> int64 -> torch.nn.Module<torch.Tensor, torch.Tensor>, classes: int64) as this =
    inherit Classifier(name)
    let layers = trunk.Layers |> List.map snd
    let headModule = head trunk.Width classes

    do
        Children.register this [ for childName, child in trunk.Layers -> childName, child :> torch.nn.Module ]
        this.register_module (headName, headModule)

    override _.FeatureSize = trunk.Width
    override _.Classes = classes

    /// <summary>The trunk's top-level modules with their names, in the order <c>Features</c> runs them (read by the
    /// ONNX exporter).</summary>
    member internal _.TrunkLayers = trunk.Layers

    /// <summary>The head's name and module (read by the ONNX exporter).</summary>
    member internal _.HeadLayer = headName, headModule

    override _.Features(images: torch.Tensor) =
        use maps = Layers.run layers images
        Layers.globalAveragePool maps

    override _.Head(features: torch.Tensor) = headModule.call features

/// <summary>Weight initialisations of the reference implementations, applied in place under no-grad.</summary>
module internal Init =

    let private noGrad (action: unit -> unit) =
        use _ = torch.no_grad ()
        action ()

    /// <summary>torchvision ResNet/MobileNet/EfficientNet convolutions: Kaiming normal, fan-out, ReLU gain; biases zero.</summary>
    let kaimingFanOut (model: torch.nn.Module) =
        noGrad (fun () ->
            for m in model.modules () do
                match m with
                | :? Conv2d as conv ->
                    torch.nn.init.kaiming_normal_ (conv.weight, mode = torch.nn.init.FanInOut.FanOut, nonlinearity = torch.nn.init.NonlinearityType.ReLU)
                    |> ignore
                    if not (isNull conv.bias) then torch.nn.init.zeros_ conv.bias |> ignore
                | _ -> ())

    /// <summary>torchvision DenseNet convolutions: Kaiming normal with PyTorch's defaults (fan-in, gain √2).</summary>
    let kaimingFanIn (model: torch.nn.Module) =
        noGrad (fun () ->
            for m in model.modules () do
                match m with
                | :? Conv2d as conv -> torch.nn.init.kaiming_normal_ conv.weight |> ignore
                | _ -> ())

    /// <summary>BatchNorm scale 1 and shift 0 (PyTorch's default too; torchvision sets it explicitly).</summary>
    let batchNormUnit (model: torch.nn.Module) =
        noGrad (fun () ->
            for m in model.modules () do
                match m with
                | :? BatchNorm2d as bn ->
                    torch.nn.init.ones_ bn.weight |> ignore
                    torch.nn.init.zeros_ bn.bias |> ignore
                | _ -> ())

    /// <summary>Applies <paramref name="initWeight"/> to every Linear weight and zeroes its bias.</summary>
    let linear (initWeight: Linear -> unit) (model: torch.nn.Module) =
        noGrad (fun () ->
            for m in model.modules () do
                match m with
                | :? Linear as fc ->
                    initWeight fc
                    if not (isNull fc.bias) then torch.nn.init.zeros_ fc.bias |> ignore
                | _ -> ())
