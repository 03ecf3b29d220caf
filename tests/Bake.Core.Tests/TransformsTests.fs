module Bake.Core.Tests.TransformsTests

open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Bake.Core
open Bake.Core.Data
open Bake.Core.Tests.TestUtil

let config = { FsCheckConfig.defaultConfig with maxTest = 100 }

/// A uint8 batch with distinct-looking pixels, built from arrays (not torch's RNG).
let images (n: int) (c: int) (h: int) (w: int) (seed: int) : torch.Tensor =
    let random = System.Random seed
    let data = Array.init (n * c * h * w) (fun _ -> byte (random.Next 256))
    DataFile.uint8Tensor data [| int64 n; int64 c; int64 h; int64 w |]

let floatOf (t: torch.Tensor) = t.to_type(torch.float32).div (Tensors.scalar 255.0)
let same (a: torch.Tensor) (b: torch.Tensor) = a.shape = b.shape && maxAbsDiff a b < 1e-6

[<Tests>]
let tests =
    testList "Data.Transforms" [
        test "random crop: every output is a window of the zero-padded image, reproducible per seed" {
            scoped (fun () ->
                let x = images 6 3 8 8 1
                let spec = { Size = 8; Padding = 2 }
                let out = Transforms.randomCrop spec (SeededRandom.Derive 5L) x
                Expect.sequenceEqual out.shape [| 6L; 3L; 8L; 8L |] "shape"
                let padded = torch.nn.functional.pad (x, [| 2L; 2L; 2L; 2L |])
                for i in 0L .. 5L do
                    let windows =
                        [ for top in 0L .. 4L do
                              for left in 0L .. 4L -> padded[i].narrow(1L, top, 8L).narrow (2L, left, 8L) ]
                    Expect.isTrue (windows |> List.exists (same out[i])) $"image {i} is a window"
                Expect.isTrue (same out (Transforms.randomCrop spec (SeededRandom.Derive 5L) x)) "same seed, same crops"
                Expect.isFalse (same out (Transforms.randomCrop spec (SeededRandom.Derive 6L) x)) "another seed, other crops")
        }

        test "horizontal flip: each image is itself or its mirror, about half are mirrored" {
            scoped (fun () ->
                let x = images 200 1 4 5 2
                let out = Transforms.horizontalFlip (SeededRandom.Derive 1L) x
                let mutable flipped = 0
                for i in 0L .. 199L do
                    if same out[i] (x[i].flip [| 2L |]) then flipped <- flipped + 1
                    else Expect.isTrue (same out[i] x[i]) "unchanged otherwise"
                Expect.isTrue (flipped > 70 && flipped < 130) $"{flipped} of 200 flipped")
        }

        testPropertyWithConfig config "random-resized-crop boxes lie inside the image and respect the ratio range when not falling back" (fun (PositiveInt h) (PositiveInt w) (seed: int) ->
            let h, w = h % 300 + 1, w % 300 + 1
            let spec = { Size = 16; Scale = (0.08, 1.0); Ratio = (0.75, 4.0 / 3.0) }
            let top, left, ch, cw = Transforms.randomResizedCropBox spec (SeededRandom.Derive(int64 seed)) h w
            Expect.isTrue (top >= 0 && left >= 0 && ch >= 1 && cw >= 1 && top + ch <= h && left + cw <= w) $"box {top},{left},{ch}×{cw} in {h}×{w}")

        test "random-resized crop of scale 1 and the image's own ratio is a plain resize" {
            scoped (fun () ->
                let x = images 3 3 12 12 3
                let spec = { Size = 12; Scale = (1.0, 1.0); Ratio = (1.0, 1.0) }
                let out = Transforms.randomResizedCrop spec (SeededRandom.Derive 1L) x
                expectClose 1e-6 "identity" out (floatOf x)
                let smaller = Transforms.randomResizedCrop { spec with Size = 6 } (SeededRandom.Derive 1L) x
                Expect.sequenceEqual smaller.shape [| 3L; 3L; 6L; 6L |] "resized to 6×6")
        }

        test "resize + center crop: shorter side resized, central square kept" {
            scoped (fun () ->
                let x = images 2 3 10 20 4
                let out = Transforms.resizeCenterCrop { Resize = 10; Crop = 6 } x
                Expect.sequenceEqual out.shape [| 2L; 3L; 6L; 6L |] "shape"
                // No resize needed (shorter side already 10): the crop is the central 6×6 window, rows 2..7, cols 7..12.
                expectClose 1e-6 "central window" out ((floatOf x).narrow(2L, 2L, 6L).narrow (3L, 7L, 6L))
                let down = Transforms.resizeCenterCrop { Resize = 5; Crop = 5 } x
                Expect.sequenceEqual down.shape [| 2L; 3L; 5L; 5L |] "10×20 → 5×10 → 5×5")
        }

        test "lighting adds one pycls PCA offset per image and channel; α = 0 changes nothing" {
            scoped (fun () ->
                let x = floatOf (images 4 3 5 5 5)
                let out = Transforms.lighting 0.1 (SeededRandom.Derive 9L) x
                let offset = out.sub x
                // Constant over pixels, within the span of the eigenvectors scaled by the eigenvalues.
                expectClose 1e-6 "constant per channel" offset (offset.mean([| 2L; 3L |], keepdim = true).expand_as offset)
                Expect.isTrue (maxAbsDiff offset (torch.zeros_like offset) > 0.0) "something changed"
                Expect.isTrue (maxAbsDiff offset (torch.zeros_like offset) < 0.2) "small offsets"
                expectClose 1e-7 "α = 0" (Transforms.lighting 0.0 (SeededRandom.Derive 9L) x) x)
        }

        test "normalize with the batch's own statistics gives zero mean and unit std per channel" {
            scoped (fun () ->
                let x = floatOf (images 8 3 6 6 6)
                let mean = x.mean([| 0L; 2L; 3L |]).to_type(torch.float64).data<float>().ToArray()
                let std = x.std([| 0L; 2L; 3L |], false).to_type(torch.float64).data<float>().ToArray()
                let out = Transforms.normalize mean std x
                expectClose 1e-5 "mean 0" (out.mean [| 0L; 2L; 3L |]) (torch.zeros 3L)
                expectClose 1e-5 "std 1" (out.std([| 0L; 2L; 3L |], false)) (torch.ones 3L))
        }

        test "CutMix: the box comes from the partner, the rest is unchanged, λ is the unchanged fraction" {
            scoped (fun () ->
                let x = floatOf (images 5 1 10 10 7)
                let labels = torch.tensor [| 0L; 1L; 2L; 3L; 4L |]
                for seed in 1L .. 20L do
                    use mixed = Transforms.cutMix 1.0 (SeededRandom.Derive seed) (x, labels)
                    for i in 0 .. 4 do
                        let p = mixed.Partners[i]
                        let fromSelf = mixed.Images[int64 i].eq(x[int64 i]).to_type(torch.int64).sum().item<int64> ()
                        let fromPartner = mixed.Images[int64 i].eq(x[int64 p]).to_type(torch.int64).sum().item<int64> ()
                        if p <> i then
                            // Outside the box a pixel is its own, inside it is the partner's (random pixels may also
                            // coincide, hence ≥).
                            Expect.isGreaterThanOrEqual (float fromSelf) (mixed.Lambda * 100.0 - 1e-9) "λ·H·W own pixels"
                            Expect.isGreaterThanOrEqual (float fromPartner) ((1.0 - mixed.Lambda) * 100.0 - 1e-9) "(1 − λ)·H·W partner pixels"
                    Expect.equal (mixed.PartnerLabels.data<int64>().ToArray()) (mixed.Partners |> Array.map int64) "partner labels"
                    Expect.isTrue (mixed.Lambda >= 0.0 && mixed.Lambda <= 1.0) "λ in [0, 1]"
                    let targets = mixed.Targets 5
                    expectClose 1e-6 "targets sum to 1" (targets.sum 1L) (torch.ones 5L))
        }

        test "apply: the CIFAR preset shapes, normalises and is deterministic per seed" {
            scoped (fun () ->
                let x = images 4 3 32 32 8
                let spec =
                    { Transforms.none with
                        RandomCrop = Some { Size = 32; Padding = 4 }
                        HorizontalFlip = true
                        Normalize = Some([| 0.5; 0.5; 0.5 |], [| 0.25; 0.25; 0.25 |]) }
                let a = Transforms.apply spec (SeededRandom.Derive(1L, 2L)) x
                let b = Transforms.apply spec (SeededRandom.Derive(1L, 2L)) x
                Expect.equal a.dtype torch.float32 "float32"
                Expect.sequenceEqual a.shape [| 4L; 3L; 32L; 32L |] "shape"
                Expect.isTrue (same a b) "deterministic"
                let plain = Transforms.apply Transforms.none (SeededRandom.Derive 1L) x
                expectClose 1e-6 "none = /255" plain (floatOf x))
        }

        test "the ImageNet presets crop large images to 224" {
            scoped (fun () ->
                let dataset =
                    { Name = "big"; Source = "test"; Classes = [| "a"; "b" |]; ImageShape = [| 3; 256; 300 |]
                      Train = new InMemorySplit(images 2 3 256 300 1, [| 0; 1 |]); Test = new InMemorySplit(images 2 3 256 300 2, [| 0; 1 |])
                      Mean = [| 0.5; 0.5; 0.5 |]; Std = [| 0.2; 0.2; 0.2 |] }
                let x = images 2 3 256 300 1
                let train = Transforms.apply (Transforms.forTraining dataset) (SeededRandom.Derive 1L) x
                let eval = Transforms.apply (Transforms.forEvaluation dataset) (SeededRandom.Derive 1L) x
                Expect.sequenceEqual train.shape [| 2L; 3L; 224L; 224L |] "train 224"
                Expect.sequenceEqual eval.shape [| 2L; 3L; 224L; 224L |] "eval 224")
        }

        testProperty "the managed uint8 path (ByteTransforms) equals Transforms.apply bit for bit, draws included" <| fun (seed: int) (channels: bool) (padding: bool) (flip: bool) (normalise: bool) ->
            scoped (fun () ->
                let c = if channels then 3 else 1
                let x = images 5 c 9 7 seed
                let spec =
                    { Transforms.none with
                        RandomCrop = (if padding then Some { Size = 8; Padding = 2 } else Some { Size = 6; Padding = 0 })
                        HorizontalFlip = flip
                        Normalize = (if normalise then Some(Array.init c (fun i -> 0.3 + 0.1 * float i), Array.init c (fun i -> 0.2 + 0.05 * float i)) else None) }
                let draws = [ SeededRandom.Derive(int64 seed, 3L); SeededRandom.Derive(int64 seed, 3L) ]
                let expected = Transforms.apply spec draws[0] x
                let actual = ByteTransforms.apply spec draws[1] x
                Expect.sequenceEqual actual.shape expected.shape "shape"
                expectClose 0.0 "values" actual expected
                Expect.equal (draws[1].NextDouble()) (draws[0].NextDouble()) "the same number of draws"
                let plain = ByteTransforms.apply { spec with RandomCrop = None } (SeededRandom.Derive 1L) x
                Expect.sequenceEqual plain.shape x.shape "without a crop the size is kept")
    ]
