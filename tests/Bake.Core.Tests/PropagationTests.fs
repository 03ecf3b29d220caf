module Bake.Core.Tests.PropagationTests

open Expecto
open TorchSharp
open Bake.Core
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.Generators
open Bake.Core.Tests.AffinityTests

let options (batch: Batch) = { BakeOptions.Default with Omega = batch.Omega; Temperature = batch.Temperature }

let probsOf precision (batch: Batch) = Propagation.temperedProbabilities (logitsOf precision batch, batch.Temperature)

let targetsOf precision (batch: Batch) =
    Propagation.softTargets (featuresOf precision batch, logitsOf precision batch, options batch)

[<Tests>]
let tests =
    testList "Propagation (Eq. 6–9)" [
        propertyInEachPrecision "Q is non-negative and its rows sum to 1" batches (fun precision batch ->
            let targets = targetsOf precision batch
            Expect.isTrue (targets.min().to_type(torch.float64).item<float> () >= 0.0) "non-negative"
            expectClose precision.Tolerance "row sums" (targets.sum 1L) (torch.ones (int64 batch.N)))

        propertyInEachPrecision "ω = 0 gives Q = P" batches (fun precision batch ->
            let targets =
                Propagation.softTargets (featuresOf precision batch, logitsOf precision batch, { options batch with Omega = 0.0 })
            expectClose precision.Tolerance "Q vs P" targets (probsOf precision batch))

        propertyInEachPrecision "Q is the fixed point of Eq. 7: Q = ωÂQ + (1−ω)P" batches (fun precision batch ->
            let affinity = Affinity.normalized (featuresOf precision batch)
            let probs = probsOf precision batch
            let targets = Propagation.closedForm (affinity, probs, batch.Omega)
            if batch.N > 1 then
                let next = affinity.mm(targets).mul(Tensors.scalar batch.Omega).add (probs.mul (Tensors.scalar (1.0 - batch.Omega)))
                expectClose precision.Tolerance "one more step" next targets)

        propertyInEachPrecision "the closed form matches 500 iterations of Eq. 7" batches (fun precision batch ->
            let affinity = Affinity.normalized (featuresOf precision batch)
            let probs = probsOf precision batch
            expectClose precision.Tolerance "closed form vs 500 steps"
                (Propagation.closedForm (affinity, probs, batch.Omega))
                (Propagation.iterate (affinity, probs, batch.Omega, 500)))

        propertyInEachPrecision "one step (Eq. 6) equals one iteration of Eq. 7" batches (fun precision batch ->
            let affinity = Affinity.normalized (featuresOf precision batch)
            let probs = probsOf precision batch
            expectClose precision.Tolerance "Eq. 6 vs Eq. 7, t = 1"
                (Propagation.oneStep (affinity, probs, batch.Omega))
                (Propagation.iterate (affinity, probs, batch.Omega, 1)))

        propertyInEachPrecision "permuting the batch permutes the rows of Q" batches (fun precision batch ->
            let order = torch.tensor (permutation (batch.Features.Length + batch.N) batch.N)
            let features = featuresOf precision batch
            let logits = logitsOf precision batch
            let targets = Propagation.softTargets (features, logits, options batch)
            let permuted = Propagation.softTargets (features.index_select (0L, order), logits.index_select (0L, order), options batch)
            expectClose precision.Tolerance "Q of the permuted batch" permuted (targets.index_select (0L, order)))

        propertyInEachPrecision "identical samples give Q = P" batches (fun precision batch ->
            let features = featuresOf(precision) batch |> fun f -> f.narrow(0L, 0L, 1L).expand(int64 batch.N, -1L).contiguous ()
            let logits = logitsOf(precision) batch |> fun l -> l.narrow(0L, 0L, 1L).expand(int64 batch.N, -1L).contiguous ()
            let targets = Propagation.softTargets (features, logits, options batch)
            expectClose precision.Tolerance "Q vs P" targets (Propagation.temperedProbabilities (logits, batch.Temperature)))

        propertyInEachPrecision "solve and explicit inverse agree" batches (fun precision batch ->
            let affinity = Affinity.normalized (featuresOf precision batch)
            let probs = probsOf precision batch
            let n = int64 batch.N
            let explicitInverse =
                if batch.N = 1 then probs
                else
                    torch.linalg.inv(torch.eye(n, dtype = precision.DType).sub (affinity.mul (Tensors.scalar batch.Omega)))
                        .mm(probs).mul (Tensors.scalar (1.0 - batch.Omega))
            expectClose precision.Tolerance "solve vs inverse" (Propagation.closedForm (affinity, probs, batch.Omega)) explicitInverse)

        propertyInEachPrecision "no gradient reaches the targets" batches (fun precision batch ->
            let features = (featuresOf precision batch).requires_grad_ true
            let logits = (logitsOf precision batch).requires_grad_ true
            let targets = Propagation.softTargets (features, logits, options batch)
            Expect.isFalse targets.requires_grad "targets do not require grad"
            Expect.isTrue targets.is_leaf "targets have no autograd history")

        test "a batch of one gives Q = P, never NaN, for every form" {
            scoped (fun () ->
                let features = torch.randn (1L, 5L)
                let logits = torch.randn (1L, 7L)
                let probs = Propagation.temperedProbabilities (logits, 4.0)
                for form in [ ClosedForm; OneStep; Steps 3 ] do
                    let targets = Propagation.softTargets (features, logits, { BakeOptions.Default with Propagation = form })
                    Expect.isFalse (targets.isnan().any().item<bool> ()) $"{form}: no NaN"
                    expectClose 1e-7 $"{form}: Q = P" targets probs)
        }

        testList "ω = 1 and ω outside [0, 1) are rejected with a clear error" [
            for omega in [ 1.0; -0.1; 1.5; nan ] ->
                test $"ω = {omega}" {
                    scoped (fun () ->
                        let affinity = Affinity.normalized (torch.randn (3L, 2L))
                        let probs = torch.full ([| 3L; 4L |], Tensors.scalar 0.25)
                        let error =
                            throwsWith<System.ArgumentOutOfRangeException> (fun () ->
                                Propagation.closedForm (affinity, probs, omega) |> ignore)
                        Expect.stringContains error.Message "[0, 1)" "states the valid range")
                }
        ]

        test "mismatched batch sizes name both shapes" {
            scoped (fun () ->
                let error =
                    throwsWith<System.ArgumentException> (fun () ->
                        Propagation.softTargets (torch.randn (4L, 3L), torch.randn (5L, 2L), BakeOptions.Default) |> ignore)
                Expect.stringContains error.Message "[4×3]" "features shape"
                Expect.stringContains error.Message "[5×2]" "logits shape")
        }

        test "inputs are neither disposed nor modified" {
            scoped (fun () ->
                let features = torch.randn (6L, 3L)
                let logits = torch.randn (6L, 4L)
                let before = logits.clone ()
                Propagation.softTargets (features, logits, BakeOptions.Default) |> ignore
                Expect.isFalse features.IsInvalid "features alive"
                expectClose 0.0 "logits unchanged" logits before)
        }
    ]
