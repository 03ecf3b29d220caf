namespace Bake.Core.Data

open System
open TorchSharp
open Bake.Core

/// <summary>The small-image training and evaluation presets (random crop with zero padding, horizontal flip,
/// normalisation) computed straight from the uint8 pixels in managed code, one pass per batch, into a fresh float32
/// tensor: the same random draws, in the same order, and the same float32 operations as
/// <see cref="M:Bake.Core.Data.Transforms.Apply(Bake.Core.Data.TransformSpec,Bake.Core.SeededRandom,TorchSharp.torch.Tensor)"/>,
/// so the result is identical (a test checks it bit for bit). Why: the libtorch path runs ~6 whole-batch float ops
/// and one narrow per image, and on a loader thread every parallel op starts another OpenMP team that competes with
/// the training step's threads; this path uses no libtorch op but the final copy.</summary>
[<RequireQualifiedAccess>]
module ByteTransforms =

    /// <summary>True when <paramref name="spec"/> and the images are what the managed path computes: uint8 N×C×H×W
    /// on the CPU, no resizing crop and no lighting noise, a normalisation (if any) with one mean and a positive std per
    /// channel, a crop (if any) that fits the padded image.</summary>
    let private handles (spec: TransformSpec) (images: torch.Tensor) =
        not (isNull images) && images.dtype = torch.uint8 && images.dim () = 4L && images.device_type = DeviceType.CPU
        && spec.RandomResizedCrop.IsNone && spec.ResizeCenterCrop.IsNone && spec.Lighting.IsNone
        && (match spec.Normalize with
            | Some(mean, std) -> mean.Length = int images.shape[1] && std.Length = mean.Length && std |> Array.forall (fun s -> s > 0.0)
            | None -> true)
        && (match spec.RandomCrop with
            | Some crop -> crop.Padding >= 0 && crop.Size >= 1 && crop.Size <= int images.shape[2] + 2 * crop.Padding && crop.Size <= int images.shape[3] + 2 * crop.Padding
            | None -> true)

    /// <summary>Applies <paramref name="spec"/> to uint8 N×C×H×W images: float32 N×C×H'×W', contiguous. Anything the
    /// managed path does not compute (see <c>handles</c>) goes to <c>Transforms.apply</c>, errors included.</summary>
    [<CompiledName("Apply")>]
    let apply (spec: TransformSpec) (random: SeededRandom) (images: torch.Tensor) : torch.Tensor =
        if not (handles spec images) then Transforms.apply spec random images
        else
            let n, c, h, w = int images.shape[0], int images.shape[1], int images.shape[2], int images.shape[3]
            let pixels =
                use packed = images.contiguous ()
                // One copy of the native bytes (a TensorAccessor's ToArray reads element by element).
                packed.bytes.ToArray()
            // Draws in Transforms.apply's order: every image's crop (top, then left), then every image's flip.
            let size, pad, offsets =
                match spec.RandomCrop with
                | Some crop ->
                    let span = h + 2 * crop.Padding - crop.Size + 1, w + 2 * crop.Padding - crop.Size + 1
                    crop.Size, crop.Padding, Array.init n (fun _ -> let top = random.NextInt(fst span) in top, random.NextInt(snd span))
                | None -> -1, 0, Array.create n (0, 0)
            let outH, outW = (if size > 0 then size, size else h, w)
            let flips = if spec.HorizontalFlip then Array.init n (fun _ -> random.NextDouble() < 0.5) else Array.zeroCreate n
            let mean, std =
                match spec.Normalize with
                | Some(mean, std) -> Array.map float32 mean, Array.map float32 std
                | None -> Array.zeroCreate c, Array.create c 1.0f
            let normalised = spec.Normalize.IsSome
            // Zero padding is applied to the [0, 1] floats, as the libtorch path pads after the conversion.
            let output = Array.zeroCreate<float32> (n * c * outH * outW)
            for i in 0 .. n - 1 do
                let top, left = offsets[i]
                for ch in 0 .. c - 1 do
                    let m, s = mean[ch], std[ch]
                    let source = (i * c + ch) * h * w
                    let target = (i * c + ch) * outH * outW
                    for y in 0 .. outH - 1 do
                        let sy = top + y - pad
                        for x in 0 .. outW - 1 do
                            let cx = if flips[i] then outW - 1 - x else x
                            let sx = left + cx - pad
                            let v = if sy >= 0 && sy < h && sx >= 0 && sx < w then float32 pixels[source + sy * w + sx] / 255.0f else 0.0f
                            output[target + y * outW + x] <- if normalised then (v - m) / s else v
            torch.tensor (output, ReadOnlySpan<int64>([| int64 n; int64 c; int64 outH; int64 outW |]), dtype = Nullable torch.float32)
