module Bake.Core.Tests.EvaluationTests

open System.Threading
open Expecto
open TorchSharp
open Bake.Core
open Bake.Core.Models
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.TrainerTests

let mean, std = [| 0.5 |], [| 0.25 |]

let tinyModel () =
    torch.manual_seed 3L |> ignore
    Models.create ("cnn-tiny", 4, 1, 12)

let batch () =
    torch.manual_seed 5L |> ignore
    // Normalised images whose pixels lie in [0, 1]: (pixel − 0.5) / 0.25.
    torch.rand(6L, 1L, 12L, 12L).sub(Tensors.scalar 0.5).div (Tensors.scalar 0.25), torch.tensor [| 0L; 1L; 2L; 3L; 0L; 1L |]

let pixels (normalised: torch.Tensor) = normalised.mul(Tensors.scalar 0.25).add (Tensors.scalar 0.5)

[<Tests>]
let tests =
    testList "Evaluation (robustness, calibration)" [
        test "a clean perturbation returns the images unchanged" {
            scoped (fun () ->
                use model = tinyModel ()
                let images, labels = batch ()
                expectClose 0.0 "clean" (Evaluation.perturb (model, images, labels, mean, std, Clean, 0)) images)
        }

        test "FGSM moves every pixel by at most ε, keeps pixels in [0, 1] and does not lower the loss" {
            scoped (fun () ->
                use model = tinyModel ()
                model.eval ()
                let images, labels = batch ()
                let adversarial = Evaluation.perturb (model, images, labels, mean, std, Fgsm 0.05, 0)
                let moved = pixels(adversarial).sub(pixels images).abs().max().item<float32> ()
                Expect.isLessThanOrEqual (float moved) (0.05 + 1e-5) "|Δpixel| ≤ ε"
                Expect.isGreaterThan (float moved) 0.04 "pixels do move"
                let p = pixels adversarial
                Expect.isTrue (p.min().item<float32> () >= -1e-6f && p.max().item<float32> () <= 1.0f + 1e-6f) "valid pixels"
                let loss (x: torch.Tensor) = torch.nn.functional.cross_entropy(model.forward x, labels).item<float32> ()
                Expect.isGreaterThanOrEqual (loss adversarial) (loss images) "the attack raises the loss")
        }

        test "blur keeps a constant image constant; noise grows with severity" {
            scoped (fun () ->
                use model = tinyModel ()
                let _, labels = batch ()
                let constant = torch.full ([| 6L; 1L; 12L; 12L |], Tensors.scalar 0.4)
                expectClose 1e-5 "blurred constant" (Evaluation.perturb (model, constant, labels, mean, std, Corrupted(GaussianBlur, 3), 0)) constant
                let spread severity =
                    let noisy = Evaluation.perturb (model, constant, labels, mean, std, Corrupted(GaussianNoise, severity), 0)
                    pixels(noisy).std().item<float32> ()
                Expect.isLessThan (spread 1) (spread 2) "severity 1 < 2"
                Expect.isLessThan (spread 2) (spread 3) "severity 2 < 3")
        }

        test "temperature fitting recovers the temperature that generated the labels" {
            scoped (fun () ->
                torch.manual_seed 11L |> ignore
                let logits = torch.randn(6000L, 5L, dtype = torch.float64).mul (Tensors.scalar 3.0)
                let labels = torch.multinomial (torch.nn.functional.softmax (logits.div (Tensors.scalar 2.0), dim = 1L), 1L) |> fun l -> l.squeeze 1L
                let t = Evaluation.fitTemperature (logits, labels)
                Expect.floatClose { absolute = 0.2; relative = 0.0 } t 2.0 "fitted T ≈ 2"
                let t32 = Evaluation.fitTemperature (logits.to_type torch.float32, labels)
                Expect.floatClose { absolute = 1e-3; relative = 0.0 } t32 t "float32 logits give the same T")
        }

        test "--calibrate needs held-out images; with them it reports a temperature" {
            withRunDir (fun dir ->
                runTiny dir [ "OPTIM.MAX_EPOCH=1" ] ignore CancellationToken.None |> ignore
                let error = throwsWith<UsageException> (fun () -> Robustness.evaluate (dir, [], [], true, 500, 1) |> ignore)
                Expect.stringContains error.Message "HOLDOUT_PER_CLASS" "names the key")
            withRunDir (fun dir ->
                runTiny dir [ "OPTIM.MAX_EPOCH=1"; "TRAIN.HOLDOUT_PER_CLASS=10" ] ignore CancellationToken.None |> ignore
                let report = Robustness.evaluate (dir, [ 0.02 ], [ GaussianBlur ], true, 500, 1)
                Expect.isSome report.Calibrated "calibrated"
                Expect.hasLength report.Fgsm 1 "one ε"
                Expect.hasLength report.Corruptions 3 "three severities"
                Expect.stringContains (Robustness.toJson report) "\"temperature\"" "JSON has the temperature")
        }

        test "held-out and training images are class-balanced, with the requested counts" {
            let labels = Array.init 200 (fun i -> i % 4)
            let split =
                { new Bake.Core.Data.ISplit with
                    member _.Count = labels.Length
                    member _.Labels = labels
                    member _.Load _ = failwith "not loaded" }
            let train, held = Setup.splitTraining (split, 20, 5, 7)
            Expect.equal train.Count 80 "20 per class"
            Expect.equal held.Count 20 "5 per class"
            Expect.equal (train.Labels |> Array.countBy id |> Array.sortBy fst) [| 0, 20; 1, 20; 2, 20; 3, 20 |] "balanced"
        }
    ]
