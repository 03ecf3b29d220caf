namespace Bake.Core

open System
open TorchSharp
open Bake.Core.Data
open Bake.Core.Models

/// <summary>An image corruption for robustness evaluation (the paper's Fig. 3 / Table 8 idea at small scale).</summary>
type Corruption =
    /// <summary>Additive Gaussian noise in [0, 1] pixel units; severities 1–3 use σ = 0.08, 0.18, 0.38 (ImageNet-C levels 1, 3, 5).</summary>
    | GaussianNoise
    /// <summary>Gaussian blur; severities 1–3 use σ = 0.5, 1.0, 1.5 pixels (scaled for 28–32 px images).</summary>
    | GaussianBlur

    /// <summary>The name used on the command line and in reports.</summary>
    member this.Name = match this with GaussianNoise -> "gaussian-noise" | GaussianBlur -> "gaussian-blur"

/// <summary>How test images are perturbed before the forward pass.</summary>
type Perturbation =
    /// <summary>Clean images.</summary>
    | Clean
    /// <summary>FGSM (Goodfellow et al.): x + ε·sign(∇ₓ CE), ε in [0, 1] pixel units, clipped to valid pixels.</summary>
    | Fgsm of epsilon: float
    /// <summary>A corruption at severity 1–3.</summary>
    | Corrupted of corruption: Corruption * severity: int

/// <summary>Evaluation of a model on a split: clean, adversarial (FGSM) and corrupted, and calibration after
/// temperature scaling.</summary>
[<RequireQualifiedAccess>]
module Evaluation =

    /// <summary>Per-channel mean/std as N×C×1×1-broadcastable tensors.</summary>
    let private channelStats (values: float[]) (device: torch.Device) =
        torch.tensor(values, dtype = torch.float32, device = device).reshape (1L, int64 values.Length, 1L, 1L)

    /// <summary>A Gaussian blur of normalised images (applied in pixel space), separable, reflect-padded.</summary>
    let private blur (pixels: torch.Tensor) (sigma: float) =
        let radius = max 1 (int (Math.Ceiling(3.0 * sigma)))
        let weights = Array.init (2 * radius + 1) (fun i -> let x = float (i - radius) in Math.Exp(-x * x / (2.0 * sigma * sigma)))
        let total = Array.sum weights
        let kernel = torch.tensor(weights |> Array.map (fun w -> float32 (w / total)), device = pixels.device)
        let channels = pixels.shape[1]
        let horizontal = kernel.reshape(1L, 1L, 1L, int64 kernel.shape[0]).expand(channels, 1L, 1L, kernel.shape[0]).contiguous ()
        let vertical = kernel.reshape(1L, 1L, int64 kernel.shape[0], 1L).expand(channels, 1L, kernel.shape[0], 1L).contiguous ()
        let padded = torch.nn.functional.pad (pixels, [| int64 radius; int64 radius; 0L; 0L |], PaddingModes.Reflect)
        let once = torch.nn.functional.conv2d (padded, horizontal, groups = channels)
        let padded = torch.nn.functional.pad (once, [| 0L; 0L; int64 radius; int64 radius |], PaddingModes.Reflect)
        torch.nn.functional.conv2d (padded, vertical, groups = channels)

    /// <summary>Applies a perturbation to a batch of normalised images. Returns a fresh tensor; FGSM uses the model's
    /// gradient with respect to the input (the model's parameters are not changed).</summary>
    [<CompiledName("Perturb")>]
    let perturb (model: Classifier, images: torch.Tensor, labels: torch.Tensor, mean: float[], std: float[], perturbation: Perturbation, seed: int) : torch.Tensor =
        Tensors.scoped (fun () ->
            let mean = channelStats mean images.device
            let std = channelStats std images.device
            let toPixels (normalised: torch.Tensor) = normalised.mul(std).add mean
            let toNormalised (pixels: torch.Tensor) = pixels.clamp(Tensors.scalar 0.0, Tensors.scalar 1.0).sub(mean).div std
            match perturbation with
            | Clean -> images.clone ()
            | Fgsm epsilon ->
                let input = images.detach().clone().requires_grad_ true
                use _ = torch.enable_grad ()
                let loss = torch.nn.functional.cross_entropy (model.forward input, labels)
                let gradient = torch.autograd.grad([| loss |], [| input |])[0]
                toNormalised (toPixels(images.detach()).add (gradient.sign().mul (Tensors.scalar epsilon)))
            | Corrupted (GaussianNoise, severity) ->
                let sigma = [| 0.08; 0.18; 0.38 |][severity - 1]
                use generator = new torch.Generator(uint64 seed)
                let noise = torch.randn(images.shape, generator = generator).``to``(images.device).mul (Tensors.scalar sigma)
                toNormalised (toPixels(images.detach()).add noise)
            | Corrupted (GaussianBlur, severity) ->
                let sigma = [| 0.5; 1.0; 1.5 |][severity - 1]
                toNormalised (blur (toPixels (images.detach ())) sigma))

    /// <summary>Logits (float64, N×K, CPU, no autograd history) and labels (int64, N) of a whole split under a
    /// perturbation, in eval mode (the model's train/eval mode is restored afterwards). Both are fresh tensors the
    /// caller owns and disposes.</summary>
    [<CompiledName("Logits")>]
    let logits (model: Classifier, split: ISplit, transform: TransformSpec, mean: float[], std: float[], batchSize: int, device: torch.Device, workers: int, perturbation: Perturbation) : torch.Tensor * torch.Tensor =
        let wasTraining = model.training
        model.eval ()
        let plan = Array.init ((split.Count + batchSize - 1) / batchSize) (fun b -> Array.init (min batchSize (split.Count - b * batchSize)) (fun i -> b * batchSize + i))
        let allLogits = ResizeArray<torch.Tensor>()
        let allLabels = ResizeArray<torch.Tensor>()
        try
            for index, batch in Seq.indexed (Loader.epoch (split, plan, transform, 0, 0, workers)) do
                use _ = batch
                use scope = torch.NewDisposeScope()
                let images = batch.Images.``to`` device
                let labels = batch.Labels.``to`` device
                let input = perturb (model, images, labels, mean, std, perturbation, index)
                let output = using (torch.no_grad ()) (fun _ -> model.forward input)
                allLogits.Add(output.detach().to_type(torch.float64).cpu().MoveToOuterDisposeScope())
                allLabels.Add(batch.Labels.cpu().clone().MoveToOuterDisposeScope())
            torch.cat (allLogits.ToArray(), 0L), torch.cat (allLabels.ToArray(), 0L)
        finally
            for t in allLogits do t.Dispose()
            for t in allLabels do t.Dispose()
            if wasTraining then model.train ()

    /// <summary>The temperature T that minimises the NLL of softmax(logits / T) (Guo et al. 2017), by golden-section
    /// search over log T in [log 0.05, log 20].</summary>
    /// <param name="logits">N×K logits, any float dtype (computed in float64); not modified.</param>
    /// <param name="labels">int64 vector of N labels.</param>
    [<CompiledName("FitTemperature")>]
    let fitTemperature (logits: torch.Tensor, labels: torch.Tensor) : float =
        use _ = torch.no_grad ()
        // item<float> reads float64 only, and float32 logits would also blur the optimum.
        use logits = logits.to_type torch.float64
        let nll (logT: float) =
            use scope = torch.NewDisposeScope()
            torch.nn.functional.cross_entropy(logits.div (Tensors.scalar (Math.Exp logT)), labels).item<float> ()
        let phi = (sqrt 5.0 - 1.0) / 2.0
        let mutable a, b = Math.Log 0.05, Math.Log 20.0
        for _ in 1 .. 60 do
            let c, d = b - phi * (b - a), a + phi * (b - a)
            if nll c < nll d then b <- d else a <- c
        Math.Exp((a + b) / 2.0)

    /// <summary>Metrics of logits (any number of rows) divided by a temperature.</summary>
    [<CompiledName("MetricsOf")>]
    let metricsOf (logits: torch.Tensor, labels: torch.Tensor, temperature: float) : EvalMetrics =
        use _ = torch.no_grad ()
        use scaled = logits.div (Tensors.scalar temperature)
        Metrics.summarize (Metrics.ofBatch (scaled, labels))

    /// <summary>Evaluates a model on a dataset's clean test images: top-1/top-5, NLL, ECE, per class (eval mode, no
    /// autograd), with the dataset's normalisation.</summary>
    [<CompiledName("Evaluate")>]
    let evaluate (model: Classifier, dataset: Dataset, transform: TransformSpec, batchSize: int, device: torch.Device, workers: int) : EvalMetrics =
        let logits, labels = logits (model, dataset.Test, transform, dataset.Mean, dataset.Std, batchSize, device, workers, Clean)
        use logits = logits
        use labels = labels
        metricsOf (logits, labels, 1.0)
