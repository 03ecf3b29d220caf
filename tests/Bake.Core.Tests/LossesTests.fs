module Bake.Core.Tests.LossesTests

open Expecto
open TorchSharp
open Bake.Core
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.Generators
open Bake.Core.Tests.AffinityTests
open Bake.Core.Tests.PropagationTests

let labelsFor (batch: Batch) =
    torch.tensor (Array.init batch.N (fun i -> int64 ((i * 7 + batch.D) % batch.K)))

[<Tests>]
let tests =
    testList "Losses (Eq. 1–2 and baselines)" [
        propertyInEachPrecision "the KD term is ≥ 0" batches (fun precision batch ->
            let kd = Losses.distillation (logitsOf precision batch, targetsOf precision batch, batch.Temperature)
            Expect.isTrue (kd.to_type(torch.float64).item<float> () >= -precision.Tolerance) "KD ≥ 0")

        propertyInEachPrecision "the KD term is 0 when Q = softmax(z/τ)" batches (fun precision batch ->
            let logits = logitsOf precision batch
            let kd = Losses.distillation (logits, Propagation.temperedProbabilities (logits, batch.Temperature), batch.Temperature)
            Expect.isTrue (abs (kd.to_type(torch.float64).item<float> ()) <= precision.Tolerance) "KD = 0")

        propertyInEachPrecision "autograd's gradient of the KD term is τ(softmax(z/τ) − Q)/N" batches (fun precision batch ->
            let logits = (logitsOf precision batch).requires_grad_ true
            let targets = targetsOf precision batch
            Losses.distillation(logits, targets, batch.Temperature).backward ()
            let analytic =
                Propagation.temperedProbabilities(logits.detach (), batch.Temperature).sub(targets)
                    .mul(Tensors.scalar batch.Temperature).div (Tensors.scalar (float batch.N))
            expectClose precision.Tolerance "dKD/dz" logits.grad analytic)

        propertyInEachPrecision "the BAKE loss is CE + λ·KD with both terms named" batches (fun precision batch ->
            let logits = logitsOf precision batch
            let labels = labelsFor batch
            let options = { options batch with Lambda = 2.5 }
            let loss = Losses.bake (featuresOf precision batch, logits, labels, options)
            Expect.sequenceEqual (loss.Terms |> Array.map (fun t -> t.Name, t.Weight)) [ "ce", 1.0; "kd", 2.5 ] "terms"
            let ce = Losses.crossEntropy (logits, labels)
            let kd = Losses.distillation (logits, targetsOf precision batch, batch.Temperature)
            expectClose precision.Tolerance "ce term" loss.Terms[0].Value ce
            expectClose precision.Tolerance "kd term" loss.Terms[1].Value kd
            expectClose (precision.Tolerance * 10.0) "total" loss.Total (ce.add (kd.mul (Tensors.scalar 2.5))))

        test "BAKE's gradient reaches the logits and the features only through CE and log softmax" {
            scoped (fun () ->
                let features = torch.randn(8L, 4L, dtype = torch.float64).requires_grad_ true
                let logits = torch.randn(8L, 3L, dtype = torch.float64).requires_grad_ true
                let loss = Losses.bake (features, logits, torch.tensor [| 0L; 1L; 2L; 0L; 1L; 2L; 0L; 1L |], BakeOptions.Default)
                loss.Total.backward ()
                Expect.isNotNull logits.grad "logits get a gradient"
                Expect.isTrue (isNull features.grad) "features get none: targets are detached")
        }

        test "label smoothing puts 1 − α on the true class and α/(K − 1) elsewhere" {
            scoped (fun () ->
                let logits = tensor float64 2 3 [| 2.0; 0.5; -1.0; 0.0; 1.0; 3.0 |]
                let labels = torch.tensor [| 0L; 2L |]
                let loss = Losses.labelSmoothing (logits, labels, { Alpha = 0.1 })
                let logProbs = torch.nn.functional.log_softmax (logits, dim = 1L) |> toArray
                let expected =
                    -((0.9 * logProbs[0] + 0.05 * logProbs[1] + 0.05 * logProbs[2])
                      + (0.05 * logProbs[3] + 0.05 * logProbs[4] + 0.9 * logProbs[5])) / 2.0
                Expect.floatClose Accuracy.veryHigh (loss.Total.item<float> ()) expected "smoothed CE")
        }

        test "CS-KD sends no gradient into the partner logits and weights KD by λ" {
            scoped (fun () ->
                let logits = torch.randn(4L, 5L, dtype = torch.float64).requires_grad_ true
                let partners = torch.randn(4L, 5L, dtype = torch.float64).requires_grad_ true
                let labels = torch.tensor [| 0L; 1L; 2L; 3L |]
                let loss = Losses.csKd (logits, partners, labels, { Temperature = 4.0; Lambda = 3.0 })
                loss.Total.backward ()
                Expect.isTrue (isNull partners.grad) "partners are teachers"
                let kd = Losses.distillation (logits, torch.nn.functional.softmax (partners.detach().div (Tensors.scalar 4.0), dim = 1L), 4.0)
                expectClose 1e-12 "kd term" loss.Terms[1].Value kd
                Expect.equal loss.Terms[1].Weight 3.0 "λ")
        }

        test "Tf-KD_reg weights CE by 1 − α and the regulariser by α·multiplier" {
            scoped (fun () ->
                let logits = torch.randn (4L, 5L, dtype = torch.float64)
                let loss = Losses.tfKdReg (logits, torch.tensor [| 0L; 1L; 2L; 3L |], TfKdRegOptions.Default)
                Expect.sequenceEqual (loss.Terms |> Array.map (fun t -> t.Name, t.Weight)) [ "ce", 0.9; "reg", 10.0 ] "terms"
                Expect.isTrue (loss.Terms[1].Value.item<float> () >= 0.0) "KL ≥ 0")
        }

        test "labels outside the class range are rejected with the range" {
            scoped (fun () ->
                let error =
                    throwsWith<System.ArgumentException> (fun () ->
                        Losses.crossEntropy (torch.randn (2L, 3L), torch.tensor [| 0L; 3L |]) |> ignore)
                Expect.stringContains error.Message "[0, 3)" "names the valid range")
        }

        test "targets of another shape are rejected" {
            scoped (fun () ->
                throwsWith<System.ArgumentException> (fun () ->
                    Losses.distillation (torch.randn (2L, 3L), torch.randn (2L, 4L), 4.0) |> ignore) |> ignore)
        }
    
        test "PS-KD: CE against (1 − α)·y + α·p, by hand" {
            scoped (fun () ->
                // Two samples, three classes; log-softmax computed by hand.
                let z = [| [| 1.0; 0.0; -1.0 |]; [| 0.5; 0.5; 2.0 |] |]
                let p = [| [| 0.2; 0.5; 0.3 |]; [| 0.1; 0.1; 0.8 |] |]
                let y = [| 0; 2 |]
                let alpha = 0.3
                let logSoftmax (row: float[]) = let m = Array.max row in let lse = m + log (row |> Array.sumBy (fun v -> exp (v - m))) in row |> Array.map (fun v -> v - lse)
                let expected =
                    Array.init 2 (fun i ->
                        let target = Array.init 3 (fun k -> (1.0 - alpha) * (if k = y[i] then 1.0 else 0.0) + alpha * p[i][k])
                        let lp = logSoftmax z[i]
                        -(Array.map2 (*) target lp |> Array.sum))
                    |> Array.average
                let logits = torch.tensor(Array.concat z, dtype = torch.float64).reshape (2L, 3L)
                let previous = torch.tensor(Array.concat p, dtype = torch.float64).reshape (2L, 3L)
                let loss = Losses.psKd (logits, torch.tensor [| 0L; 2L |], previous, alpha)
                Expect.sequenceEqual (loss.Terms |> Array.map (fun t -> t.Name, t.Weight)) [ "soft_ce", 1.0 ] "one term"
                Expect.floatClose Accuracy.high (loss.Total.item<float> ()) expected "hand value"
                Expect.floatClose Accuracy.veryHigh (Losses.psKdAlpha (PsKdOptions.Default, 0, 10)) 0.08 "α₁ = 0.8 · 1/10"
                Expect.floatClose Accuracy.veryHigh (Losses.psKdAlpha (PsKdOptions.Default, 9, 10)) 0.8 "α_T at the last epoch")
        }

        test "DLB: CE over all images + α·τ²·KL on the repeated ones, by hand" {
            scoped (fun () ->
                let z = [| [| 2.0; 0.0 |]; [| 0.0; 1.0 |]; [| -1.0; 1.0 |] |]
                let previous = [| [| 0.7; 0.3 |] |] // softened prediction of the first (repeated) image at the last step
                let y = [| 0; 1; 1 |]
                let tau, weight = 3.0, 0.5
                let softmax (row: float[]) = let e = row |> Array.map exp in let s = Array.sum e in e |> Array.map (fun v -> v / s)
                let ce = Array.init 3 (fun i -> -log (softmax z[i]).[y[i]]) |> Array.average
                let pTau = softmax (z[0] |> Array.map (fun v -> v / tau))
                let kl = Array.map2 (fun q p -> q * log (q / p)) previous[0] pTau |> Array.sum
                let logits = torch.tensor(Array.concat z, dtype = torch.float64).reshape (3L, 2L)
                let loss = Losses.dlb (logits, torch.tensor [| 0L; 1L; 1L |], torch.tensor(previous[0], dtype = torch.float64).reshape (1L, 2L), { Temperature = tau; Weight = weight })
                Expect.sequenceEqual (loss.Terms |> Array.map (fun t -> t.Name, t.Weight)) [ "ce", 1.0; "kd", weight ] "terms"
                Expect.floatClose Accuracy.high (loss.Terms[0].Value.item<float> ()) ce "CE over all three"
                Expect.floatClose Accuracy.high (loss.Terms[1].Value.item<float> ()) (tau * tau * kl) "τ²·KL over the one repeated image"
                Expect.floatClose Accuracy.high (loss.Total.item<float> ()) (ce + weight * tau * tau * kl) "total"
                let first = Losses.dlb (logits, torch.tensor [| 0L; 1L; 1L |], torch.zeros (0L, 2L, dtype = torch.float64), DlbOptions.Default)
                Expect.floatClose Accuracy.veryHigh (first.Terms[1].Value.item<float> ()) 0.0 "no repeated image: no consistency term")
        }
    ]
