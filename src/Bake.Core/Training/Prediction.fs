namespace Bake.Core

open System
open TorchSharp
open Bake.Core.Data
open Bake.Core.Models

/// <summary>One class of a prediction: its index, its name and its probability.</summary>
[<NoComparison>]
type ClassScore =
    {
        /// <summary>The class index (the label the model was trained with).</summary>
        Label: int
        /// <summary>The class name the checkpoint records for the label.</summary>
        ClassName: string
        /// <summary>softmax(logits)[Label], in [0, 1].</summary>
        Probability: float
    }

/// <summary>A trained model ready to classify images: the model of a checkpoint (eval mode, CPU) with the image
/// shape, class names and normalisation it was trained with. <c>Dispose</c> frees the model.</summary>
[<Sealed>]
type Predictor internal (checkpoint: string, state: CheckpointState, model: Classifier) =
    /// <summary>The checkpoint folder the model was loaded from.</summary>
    member _.Checkpoint = checkpoint
    /// <summary>The checkpoint's state: model name, classes, image shape, mean and std.</summary>
    member _.State = state
    /// <summary>The class names in label order.</summary>
    member _.Classes = state.Classes
    /// <summary>The model (owned by the predictor; do not dispose).</summary>
    member _.Model = model

    interface IDisposable with
        member _.Dispose() = model.Dispose()

/// <summary>Classifying images with a checkpoint: loading, preprocessing as in evaluation, top-k.</summary>
[<RequireQualifiedAccess>]
module Prediction =

    /// <summary>Images per forward pass when classifying many files.</summary>
    let private chunk = 64

    /// <summary>Loads a checkpoint folder, or a run directory's last checkpoint (its final model), for prediction.</summary>
    /// <exception cref="T:Bake.Core.BakeException">No checkpoint there, or it cannot be read.</exception>
    [<CompiledName("Load")>]
    let load (path: string) : Predictor =
        if isNull path then nullArg "path"
        let checkpoint = Checkpoints.ofPath path
        let state, model = Checkpoints.loadModel checkpoint
        new Predictor(checkpoint, state, model)

    /// <summary>Brings pixels to the input the checkpoint's model expects, as evaluation did: the channel count
    /// converted (RGB → gray by ITU-R 601 luma, as PIL's <c>convert("L")</c>; gray → RGB by repetition), images of
    /// another size resized (shorter side) and center-cropped to the training size, as image folders are decoded,
    /// then the evaluation transform of that size (normalisation; resize 256 + center crop 224 for images above 64
    /// pixels) with the checkpoint's mean and std.</summary>
    /// <param name="state">The checkpoint's state.</param>
    /// <param name="pixels">N×C×H×W (or one C×H×W image): uint8 in 0–255, or floating point in [0, 1]. Not modified.</param>
    /// <returns>A fresh float32 N×C'×H'×W' tensor.</returns>
    /// <exception cref="T:System.ArgumentException">Not an image batch, or a channel count that cannot be converted.</exception>
    [<CompiledName("Prepare")>]
    let prepare (state: CheckpointState, pixels: torch.Tensor) : torch.Tensor =
        if isNull pixels then nullArg "pixels"
        if pixels.dim () <> 3L && pixels.dim () <> 4L then
            invalidArg "pixels" $"expected images N×C×H×W or one image C×H×W, got {Tensors.describe pixels}"
        let channels, side = state.ImageShape[0], state.ImageShape[1]
        Tensors.scoped (fun () ->
            let batch = if pixels.dim () = 3L then pixels.unsqueeze 0L else pixels.alias ()
            let floats = Transforms.toFloat batch
            let converted =
                match int floats.shape[1], channels with
                | c, wanted when c = wanted -> floats
                | 3, 1 ->
                    use luma = torch.tensor([| 0.299f; 0.587f; 0.114f |]).reshape (1L, 3L, 1L, 1L)
                    floats.mul(luma).sum (1L, keepdim = true)
                | 1, 3 -> floats.expand(-1L, 3L, -1L, -1L).contiguous ()
                | c, wanted -> invalidArg "pixels" $"images with {c} channels cannot be converted to the {wanted} channels the model {state.Model} was trained on"
            let sized =
                if converted.shape[2] = int64 side && converted.shape[3] = int64 side then converted
                else Transforms.resizeCenterCrop { Resize = side; Crop = side } converted
            let spec = Transforms.forEvaluationOf (state.ImageShape, state.Mean, state.Std)
            // The evaluation preset draws no random numbers; the generator is only the function's parameter.
            Transforms.apply spec (SeededRandom.Derive 0L) sized)

    /// <summary>Decodes image files (JPEG or PNG, via SkiaSharp) and prepares them as <see cref="M:Bake.Core.Prediction.Prepare"/>
    /// does.</summary>
    /// <returns>A fresh float32 N×C×H×W tensor, one row per file in order.</returns>
    /// <exception cref="T:Bake.Core.BakeException">A file is missing or cannot be decoded; the message names it.</exception>
    [<CompiledName("ReadImages")>]
    let readImages (state: CheckpointState, paths: string[]) : torch.Tensor =
        if isNull paths then nullArg "paths"
        if paths.Length = 0 then invalidArg "paths" "no image file given"
        Tensors.scoped (fun () ->
            let images =
                paths
                |> Array.map (fun path ->
                    if IO.Directory.Exists path then raise (BakeException $"{path}: is a directory, not an image file (name the image files)")
                    if not (IO.File.Exists path) then raise (BakeException $"{path}: image file not found")
                    let planar, h, w = ImageFolder.decode path
                    prepare (state, DataFile.uint8Tensor planar [| 3L; int64 h; int64 w |]))
            torch.cat (images, 0L))

    /// <summary>The top-k classes of each row of class probabilities, most probable first.</summary>
    /// <param name="probabilities">N×K probabilities; not modified.</param>
    /// <param name="classes">The K class names.</param>
    /// <param name="k">k ≥ 1; at most K classes are returned.</param>
    [<CompiledName("TopK")>]
    let topK (probabilities: torch.Tensor, classes: string[], k: int) : ClassScore[][] =
        Tensors.requireMatrix "probabilities" probabilities
        if k < 1 then invalidArg "k" $"top-k needs k >= 1, got {k}"
        let width = probabilities.shape[1]
        if int64 classes.Length <> width then
            invalidArg "classes" $"{classes.Length} class names for probabilities {Tensors.describe probabilities}"
        use _ = torch.NewDisposeScope()
        let k = min (int64 k) width
        let struct (values, indices) = probabilities.detach().to_type(torch.float64).cpu().topk (int k, dim = 1)
        let values = values.contiguous().data<float>().ToArray()
        let indices = indices.contiguous().data<int64>().ToArray()
        Array.init (int probabilities.shape[0]) (fun row ->
            Array.init (int k) (fun j ->
                let i = row * int k + j
                { Label = int indices[i]; ClassName = classes[int indices[i]]; Probability = values[i] }))

    /// <summary>Class probabilities softmax(logits) of prepared images (see <see cref="M:Bake.Core.Prediction.Prepare"/>),
    /// computed without autograd.</summary>
    /// <returns>A fresh float32 N×K tensor on the CPU.</returns>
    [<CompiledName("Probabilities")>]
    let probabilities (predictor: Predictor, inputs: torch.Tensor) : torch.Tensor =
        if isNull inputs then nullArg "inputs"
        use _ = torch.no_grad ()
        Tensors.scoped (fun () -> torch.nn.functional.softmax(predictor.Model.forward inputs, dim = 1L).cpu ())

    /// <summary>The top-k classes of each image of a pixel batch (see <see cref="M:Bake.Core.Prediction.Prepare"/> for
    /// what the tensor may hold).</summary>
    [<CompiledName("PredictPixels")>]
    let predictPixels (predictor: Predictor, pixels: torch.Tensor, k: int) : ClassScore[][] =
        use _ = torch.NewDisposeScope()
        let inputs = prepare (predictor.State, pixels)
        topK (probabilities (predictor, inputs), predictor.Classes, k)

    /// <summary>The top-k classes of each image file, in order (decoded and classified in chunks of 64).</summary>
    /// <exception cref="T:Bake.Core.BakeException">A file is missing or cannot be decoded; the message names it.</exception>
    [<CompiledName("PredictFiles")>]
    let predictFiles (predictor: Predictor, paths: string seq, k: int) : ClassScore[][] =
        if isNull paths then nullArg "paths"
        if k < 1 then invalidArg "k" $"top-k needs k >= 1, got {k}"
        paths
        |> Seq.chunkBySize chunk
        |> Seq.collect (fun files ->
            use _ = torch.NewDisposeScope()
            let inputs = readImages (predictor.State, files)
            topK (probabilities (predictor, inputs), predictor.Classes, k))
        |> Array.ofSeq
