namespace Bake.Core.Data

open System
open TorchSharp
open Bake.Core

/// <summary>Random crop after zero padding (CIFAR style: 32 with padding 4).</summary>
type RandomCropSpec =
    {
        /// <summary>Output height and width.</summary>
        Size: int
        /// <summary>Zero padding added on every side before cropping.</summary>
        Padding: int
    }

/// <summary>Inception-style random-resized crop (torchvision's <c>RandomResizedCrop</c>): a random area fraction and
/// aspect ratio, 10 tries, then a central fallback; the crop is resized to Size×Size (bilinear).</summary>
type RandomResizedCropSpec =
    {
        /// <summary>Output height and width.</summary>
        Size: int
        /// <summary>The range of the crop's area as a fraction of the image, e.g. (0.08, 1.0).</summary>
        Scale: float * float
        /// <summary>The range of the crop's aspect ratio w/h, e.g. (3/4, 4/3); drawn log-uniformly.</summary>
        Ratio: float * float
    }

/// <summary>Resize so that the shorter side is <c>Resize</c> (bilinear), then take the central Crop×Crop.</summary>
type ResizeCenterCropSpec =
    {
        /// <summary>The shorter side after resizing.</summary>
        Resize: int
        /// <summary>The side of the central square crop; equal to Resize (or larger than the image) skips cropping.</summary>
        Crop: int
    }

/// <summary>Which augmentations turn a batch of uint8 images into the network's float32 input, applied in this
/// order: random-resized crop or resize + center crop, random crop with padding, horizontal flip, scaling to [0, 1],
/// PCA lighting noise, normalisation.</summary>
[<NoComparison>]
type TransformSpec =
    {
        /// <summary>Random-resized crop (ImageNet-style training).</summary>
        RandomResizedCrop: RandomResizedCropSpec option
        /// <summary>Resize + center crop (ImageNet-style evaluation, or downscaling).</summary>
        ResizeCenterCrop: ResizeCenterCropSpec option
        /// <summary>Random crop after zero padding (CIFAR-style training).</summary>
        RandomCrop: RandomCropSpec option
        /// <summary>Flip each image horizontally with probability 1/2.</summary>
        HorizontalFlip: bool
        /// <summary>AlexNet PCA lighting noise with this α standard deviation (pycls uses 0.1); 3-channel images only.</summary>
        Lighting: float option
        /// <summary>Per-channel mean and std, in [0, 1] units, subtracted and divided.</summary>
        Normalize: (float[] * float[]) option
    }

/// <summary>A batch after CutMix: the mixed images, both label sets and the mixing weight.</summary>
[<NoComparison; NoEquality>]
type CutMixed =
    {
        /// <summary>float32 N×C×H×W: a box of each image replaced by the same box of its partner's image.</summary>
        Images: torch.Tensor
        /// <summary>The original labels, int64 N.</summary>
        Labels: torch.Tensor
        /// <summary>The partners' labels, int64 N.</summary>
        PartnerLabels: torch.Tensor
        /// <summary>λ, the fraction of each image that is still its own (after clipping the box).</summary>
        Lambda: float
        /// <summary>Partner of image i = image Partners[i].</summary>
        Partners: int[]
    }
    /// <summary>Soft targets λ·onehot(label) + (1 − λ)·onehot(partner label), float32 N×K, for a soft cross-entropy.</summary>
    member this.Targets(classes: int) : torch.Tensor =
        Tensors.scoped (fun () ->
            let a = torch.nn.functional.one_hot(this.Labels, int64 classes).to_type torch.float32
            let b = torch.nn.functional.one_hot(this.PartnerLabels, int64 classes).to_type torch.float32
            a.mul(Tensors.scalar this.Lambda).add (b.mul (Tensors.scalar (1.0 - this.Lambda))))
    interface IDisposable with
        member this.Dispose() =
            this.Images.Dispose()
            this.Labels.Dispose()
            this.PartnerLabels.Dispose()

/// <summary>Seeded, reproducible image augmentations on whole batches. Every function takes its randomness from a
/// <see cref="T:Bake.Core.SeededRandom"/> (one draw sequence per image, in batch order), returns a fresh tensor
/// and never modifies or disposes its input.</summary>
[<RequireQualifiedAccess>]
module Transforms =

    /// <summary>The ImageNet PCA eigenvalues of pycls / AlexNet lighting (docs/official-code.md §4.1), RGB order.</summary>
    let lightingEigenvalues = [| 0.2175; 0.0188; 0.0045 |]

    /// <summary>The matching eigenvectors (rows = R, G, B components; column j = eigenvector j).</summary>
    let lightingEigenvectors =
        array2D [ [ -0.5675; 0.7192; 0.4009 ]; [ -0.5808; -0.0045; -0.8140 ]; [ -0.5836; -0.6948; 0.4203 ] ]

    /// <summary>ImageNet's RGB mean and std in [0, 1] units (the constants of pycls and torchvision).</summary>
    let imageNetMean = [| 0.485; 0.456; 0.406 |]

    /// <summary>ImageNet's RGB std.</summary>
    let imageNetStd = [| 0.229; 0.224; 0.225 |]

    /// <summary>No augmentation and no normalisation: only the conversion to float32 in [0, 1].</summary>
    let none =
        { RandomResizedCrop = None; ResizeCenterCrop = None; RandomCrop = None; HorizontalFlip = false; Lighting = None; Normalize = None }

    let private requireImages (images: torch.Tensor) =
        if isNull images then nullArg "images"
        if images.dim () <> 4L then invalidArg "images" $"images must be N×C×H×W, got {Tensors.describe images}"

    let private asFloat (images: torch.Tensor) =
        if images.dtype = torch.uint8 then images.to_type(torch.float32).div (Tensors.scalar 255.0)
        else images.to_type torch.float32

    /// <summary>uint8 N×C×H×W → float32 in [0, 1] (float inputs are copied as float32).</summary>
    [<CompiledName("ToFloat")>]
    let toFloat (images: torch.Tensor) : torch.Tensor =
        requireImages images
        Tensors.scoped (fun () -> (asFloat images).alias ())

    /// <summary>Zero-pads each image by <c>Padding</c> on every side and crops a random Size×Size window.</summary>
    [<CompiledName("RandomCrop")>]
    let randomCrop (spec: RandomCropSpec) (random: SeededRandom) (images: torch.Tensor) : torch.Tensor =
        requireImages images
        Tensors.scoped (fun () ->
            let p = int64 spec.Padding
            let padded = if p > 0L then torch.nn.functional.pad (images, [| p; p; p; p |]) else images
            let h, w = int padded.shape[2], int padded.shape[3]
            if spec.Size > h || spec.Size > w then
                invalidArg "spec" $"crop {spec.Size} is larger than the padded image {h}×{w}"
            let size = int64 spec.Size
            let crops =
                Array.init (int images.shape[0]) (fun i ->
                    let top = random.NextInt(h - spec.Size + 1)
                    let left = random.NextInt(w - spec.Size + 1)
                    padded[int64 i].narrow(1L, int64 top, size).narrow (2L, int64 left, size))
            torch.stack (crops, 0L))

    /// <summary>Flips each image horizontally with probability 1/2.</summary>
    [<CompiledName("HorizontalFlip")>]
    let horizontalFlip (random: SeededRandom) (images: torch.Tensor) : torch.Tensor =
        requireImages images
        Tensors.scoped (fun () ->
            let n = int images.shape[0]
            let flips = Array.init n (fun _ -> random.NextDouble() < 0.5)
            let mask = torch.tensor(flips).reshape (int64 n, 1L, 1L, 1L)
            torch.where (mask, images.flip [| 3L |], images))

    /// <summary>The crop box (top, left, height, width) of torchvision's RandomResizedCrop for an H×W image.</summary>
    [<CompiledName("RandomResizedCropBox")>]
    let randomResizedCropBox (spec: RandomResizedCropSpec) (random: SeededRandom) (height: int) (width: int) : int * int * int * int =
        let area = float (height * width)
        let scaleLo, scaleHi = spec.Scale
        let ratioLo, ratioHi = spec.Ratio
        let rec attempt k =
            if k = 10 then
                // Fallback: the central crop of the largest size the ratio range allows.
                let inRatio = float width / float height
                let w, h =
                    if inRatio < ratioLo then width, int (Math.Round(float width / ratioLo))
                    elif inRatio > ratioHi then int (Math.Round(float height * ratioHi)), height
                    else width, height
                (height - h) / 2, (width - w) / 2, h, w
            else
                let target = area * random.Uniform(scaleLo, scaleHi)
                let aspect = exp (random.Uniform(log ratioLo, log ratioHi))
                let w = int (Math.Round(sqrt (target * aspect)))
                let h = int (Math.Round(sqrt (target / aspect)))
                if 0 < w && w <= width && 0 < h && h <= height then
                    random.NextInt(height - h + 1), random.NextInt(width - w + 1), h, w
                else
                    attempt (k + 1)
        attempt 0

    let private resize (images: torch.Tensor) (height: int) (width: int) =
        if int images.shape[2] = height && int images.shape[3] = width then images.alias ()
        else
            torch.nn.functional.interpolate (
                asFloat images, size = [| int64 height; int64 width |], mode = torch.InterpolationMode.Bilinear, align_corners = false, antialias = true)

    /// <summary>Random-resized crop of each image to Size×Size (bilinear, antialiased); float32 output, in the input's
    /// units ([0, 1] for uint8 input).</summary>
    [<CompiledName("RandomResizedCrop")>]
    let randomResizedCrop (spec: RandomResizedCropSpec) (random: SeededRandom) (images: torch.Tensor) : torch.Tensor =
        requireImages images
        Tensors.scoped (fun () ->
            let h, w = int images.shape[2], int images.shape[3]
            let source = asFloat images
            let crops =
                Array.init (int images.shape[0]) (fun i ->
                    let top, left, ch, cw = randomResizedCropBox spec random h w
                    let crop = source[int64 i].narrow(1L, int64 top, int64 ch).narrow(2L, int64 left, int64 cw).unsqueeze 0L
                    resize crop spec.Size spec.Size)
            torch.cat (crops, 0L))

    /// <summary>Resizes every image so its shorter side is <c>Resize</c>, then takes the central Crop×Crop
    /// (torchvision's Resize + CenterCrop); float32 output.</summary>
    [<CompiledName("ResizeCenterCrop")>]
    let resizeCenterCrop (spec: ResizeCenterCropSpec) (images: torch.Tensor) : torch.Tensor =
        requireImages images
        Tensors.scoped (fun () ->
            let h, w = int images.shape[2], int images.shape[3]
            let newH, newW =
                if h <= w then spec.Resize, int (Math.Round(float spec.Resize * float w / float h))
                else int (Math.Round(float spec.Resize * float h / float w)), spec.Resize
            let resized = resize (asFloat images) newH newW
            let cropH, cropW = min spec.Crop newH, min spec.Crop newW
            let top = int (Math.Round(float (newH - cropH) / 2.0))
            let left = int (Math.Round(float (newW - cropW) / 2.0))
            resized.narrow(2L, int64 top, int64 cropH).narrow(3L, int64 left, int64 cropW).contiguous ())

    /// <summary>AlexNet-style PCA lighting noise (pycls): for each image, α ~ N(0, alphaStd)³ and every pixel of
    /// channel c gets + Σⱼ V[c, j] αⱼ λⱼ. Input and output float32 in [0, 1] units, 3 channels (RGB).</summary>
    [<CompiledName("Lighting")>]
    let lighting (alphaStd: float) (random: SeededRandom) (images: torch.Tensor) : torch.Tensor =
        requireImages images
        if images.shape[1] <> 3L then invalidArg "images" $"lighting noise needs 3 (RGB) channels, got {Tensors.describe images}"
        Tensors.scoped (fun () ->
            let n = int images.shape[0]
            let offsets =
                Array.init n (fun _ ->
                    let alpha = Array.init 3 (fun _ -> random.Normal(0.0, alphaStd))
                    Array.init 3 (fun c -> Seq.sum (seq { for j in 0..2 -> lightingEigenvectors[c, j] * alpha[j] * lightingEigenvalues[j] })))
                |> Array.concat
            let shift = torch.tensor(offsets, dtype = torch.float32).reshape (int64 n, 3L, 1L, 1L)
            (asFloat images).add shift)

    /// <summary>(x − mean) / std per channel; float32 output.</summary>
    [<CompiledName("Normalize")>]
    let normalize (mean: float[]) (std: float[]) (images: torch.Tensor) : torch.Tensor =
        requireImages images
        let c = int images.shape[1]
        if mean.Length <> c || std.Length <> c then
            invalidArg "mean" $"normalisation has {mean.Length} means and {std.Length} stds for {c} channels"
        if std |> Array.exists (fun s -> not (s > 0.0)) then invalidArg "std" "every std must be > 0"
        Tensors.scoped (fun () ->
            let m = torch.tensor(mean, dtype = torch.float32).reshape (1L, int64 c, 1L, 1L)
            let s = torch.tensor(std, dtype = torch.float32).reshape (1L, int64 c, 1L, 1L)
            (asFloat images).sub(m).div s)

    /// <summary>Applies a whole <see cref="T:Bake.Core.Data.TransformSpec"/> to uint8 N×C×H×W images: float32
    /// N×C×H'×W', augmented and normalised. Deterministic given the state of <paramref name="random"/>.</summary>
    [<CompiledName("Apply")>]
    let apply (spec: TransformSpec) (random: SeededRandom) (images: torch.Tensor) : torch.Tensor =
        requireImages images
        Tensors.scoped (fun () ->
            let mutable x = asFloat images
            match spec.RandomResizedCrop, spec.ResizeCenterCrop with
            | Some crop, _ -> x <- randomResizedCrop crop random x
            | None, Some resize -> x <- resizeCenterCrop resize x
            | None, None -> ()
            spec.RandomCrop |> Option.iter (fun crop -> x <- randomCrop crop random x)
            if spec.HorizontalFlip then x <- horizontalFlip random x
            spec.Lighting |> Option.iter (fun alpha -> if x.shape[1] = 3L then x <- lighting alpha random x)
            spec.Normalize |> Option.iter (fun (mean, std) -> x <- normalize mean std x)
            x.contiguous ())

    /// <summary>Batch-level CutMix (Yun et al. 2019; paper Tables 6 and 14, pycls <c>cutmix_batch</c>):
    /// λ ~ Beta(α, α), a random permutation pairs the images, a box of area (1 − λ)·H·W centred uniformly (clipped
    /// at the borders) is copied from each partner, and λ is recomputed from the clipped box.</summary>
    /// <param name="alpha">α &gt; 0 of the Beta distribution (1.0 is the usual choice).</param>
    /// <param name="random">The randomness.</param>
    /// <param name="images">float32 N×C×H×W (augmented, normalised); not modified.</param>
    /// <param name="labels">int64 N.</param>
    [<CompiledName("CutMix")>]
    let cutMix (alpha: float) (random: SeededRandom) (images: torch.Tensor, labels: torch.Tensor) : CutMixed =
        requireImages images
        if not (alpha > 0.0) then invalidArg "alpha" $"CutMix α must be > 0, got {alpha}"
        let n = int images.shape[0]
        let h, w = int images.shape[2], int images.shape[3]
        let lambda = random.Beta(alpha, alpha)
        let partners = Array.init n id
        random.Shuffle partners
        let cut = sqrt (1.0 - lambda)
        let cutH, cutW = int (float h * cut), int (float w * cut)
        let cy, cx = random.NextInt h, random.NextInt w
        let top, bottom = Math.Clamp(cy - cutH / 2, 0, h), Math.Clamp(cy + cutH / 2, 0, h)
        let left, right = Math.Clamp(cx - cutW / 2, 0, w), Math.Clamp(cx + cutW / 2, 0, w)
        let mixed =
            Tensors.scoped (fun () ->
                let result = images.clone ()
                if bottom > top && right > left then
                    use index = torch.tensor (partners |> Array.map int64)
                    let box (t: torch.Tensor) = t.narrow(2L, int64 top, int64 (bottom - top)).narrow (3L, int64 left, int64 (right - left))
                    (box result).copy_ (box (images.index_select (0L, index))) |> ignore
                result)
        let partnerLabels =
            use index = torch.tensor (partners |> Array.map int64)
            labels.index_select (0L, index)
        { Images = mixed
          Labels = labels.clone ()
          PartnerLabels = partnerLabels
          Lambda = 1.0 - float ((bottom - top) * (right - left)) / float (h * w)
          Partners = partners }

    /// <summary>True for digit-like datasets (MNIST, KMNIST) whose classes change under a horizontal flip.</summary>
    let private flipSensitive (dataset: Dataset) =
        dataset.Classes = Idx.mnistClasses || dataset.Classes = Idx.kmnistClasses

    /// <summary>The training preset for a dataset. Images up to 64 pixels (MNIST, CIFAR, TinyImageNet): random crop
    /// at native size with padding ⌈side/8⌉ (4 for CIFAR's 32) and a horizontal flip (not for digits), as in the
    /// small-scale experiments (docs/official-code.md §4.2). Larger images: random-resized crop to 224 (area 0.08–1,
    /// ratio 3/4–4/3), flip and lighting noise 0.1 (the ImageNet recipe, §4.1). Normalised by the dataset's mean/std.</summary>
    [<CompiledName("ForTraining")>]
    let forTraining (dataset: Dataset) : TransformSpec =
        let side = min dataset.ImageShape[1] dataset.ImageShape[2]
        let normalize = Some(dataset.Mean, dataset.Std)
        if side <= 64 then
            { none with
                RandomCrop = Some { Size = side; Padding = (side + 7) / 8 }
                HorizontalFlip = not (flipSensitive dataset)
                Normalize = normalize }
        else
            { none with
                RandomResizedCrop = Some { Size = 224; Scale = (0.08, 1.0); Ratio = (3.0 / 4.0, 4.0 / 3.0) }
                HorizontalFlip = true
                Lighting = (if dataset.ImageShape[0] = 3 then Some 0.1 else None)
                Normalize = normalize }

    /// <summary>The evaluation preset for images of a shape (C; H; W) with per-channel statistics (what
    /// <see cref="M:Bake.Core.Data.Transforms.ForEvaluation(Bake.Core.Data.Dataset)"/> gives a dataset of that
    /// shape), for checkpoints that record them.</summary>
    [<CompiledName("ForEvaluationOf")>]
    let forEvaluationOf (imageShape: int[], mean: float[], std: float[]) : TransformSpec =
        let side = min imageShape[1] imageShape[2]
        let normalize = Some(mean, std)
        if side <= 64 then { none with Normalize = normalize }
        else { none with ResizeCenterCrop = Some { Resize = 256; Crop = 224 }; Normalize = normalize }

    /// <summary>The evaluation preset: normalisation only for images up to 64 pixels; resize to 256 then center
    /// crop 224 for larger ones.</summary>
    [<CompiledName("ForEvaluation")>]
    let forEvaluation (dataset: Dataset) : TransformSpec = forEvaluationOf (dataset.ImageShape, dataset.Mean, dataset.Std)

    /// <summary>The official small-scale TinyImageNet recipe (docs/official-code.md §4.2): training RandomResizedCrop(32)
    /// (area 0.08–1) + flip, evaluation Resize(32); ImageNet mean/std.</summary>
    [<CompiledName("TinyImageNet")>]
    let tinyImageNet () : TransformSpec * TransformSpec =
        let normalize = Some(imageNetMean, imageNetStd)
        { none with
            RandomResizedCrop = Some { Size = 32; Scale = (0.08, 1.0); Ratio = (3.0 / 4.0, 4.0 / 3.0) }
            HorizontalFlip = true
            Normalize = normalize },
        { none with ResizeCenterCrop = Some { Resize = 32; Crop = 32 }; Normalize = normalize }
