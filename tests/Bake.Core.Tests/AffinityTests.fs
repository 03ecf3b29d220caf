module Bake.Core.Tests.AffinityTests

open Expecto
open FsCheck.FSharp
open TorchSharp
open Bake.Core
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.Generators

let config = { FsCheckConfig.defaultConfig with maxTest = 100 }

/// One property, checked in float64 (tight tolerance) and float32 (loose tolerance).
let propertyInEachPrecision name (arb: FsCheck.Arbitrary<Batch>) (check: Precision -> Batch -> unit) =
    testList name [
        for precision in precisions ->
            testPropertyWithConfig config precision.Name (Prop.forAll arb (fun batch -> scoped (fun () -> check precision batch)))
    ]

let featuresOf precision (batch: Batch) = tensor precision batch.N batch.D batch.Features
let logitsOf precision (batch: Batch) = tensor precision batch.N batch.K batch.Logits

[<Tests>]
let tests =
    testList "Affinity (Eq. 3–4)" [
        propertyInEachPrecision "Â has a zero diagonal and non-negative entries" batches (fun precision batch ->
            let affinity = Affinity.normalized (featuresOf precision batch)
            Expect.sequenceEqual affinity.shape [| int64 batch.N; int64 batch.N |] "N×N"
            Expect.equal (affinity.diagonal().abs().max().to_type(torch.float64).item<float> ()) 0.0 "zero diagonal"
            Expect.isTrue ((affinity.min().to_type(torch.float64).item<float> ()) >= 0.0) "non-negative")

        propertyInEachPrecision "rows of Â sum to 1 (N ≥ 2)" multiBatches (fun precision batch ->
            let affinity = Affinity.normalized (featuresOf precision batch)
            expectClose precision.Tolerance "row sums" (affinity.sum 1L) (torch.ones (int64 batch.N)))

        propertyInEachPrecision "Â is invariant to positive rescaling of a feature row" batches (fun precision batch ->
            let features = featuresOf precision batch
            let row = batch.Features.Length % batch.N
            let scale = torch.ones(int64 batch.N, dtype = precision.DType).index_put_ (Tensors.scalar 37.5, torch.tensor (int64 row))
            let rescaled = features.mul (scale.unsqueeze 1L)
            expectClose precision.Tolerance "Â after rescaling a row" (Affinity.normalized rescaled) (Affinity.normalized features))

        test "a batch of one gives the 1×1 zero matrix, not NaN" {
            scoped (fun () ->
                let affinity = Affinity.normalized (torch.randn (1L, 4L))
                Expect.equal (affinity.item<float32> ()) 0.0f "Â = [[0]]")
        }

        test "features that are not a matrix are rejected with their shape" {
            scoped (fun () ->
                let error = throwsWith<System.ArgumentException> (fun () -> Affinity.normalized (torch.randn (3L)) |> ignore)
                Expect.stringContains error.Message "[3]" "names the shape")
        }

        test "gradients flow through the affinity" {
            scoped (fun () ->
                let features = torch.randn(4L, 3L, dtype = torch.float64).requires_grad_ true
                let affinity = Affinity.normalized features
                affinity.mul(torch.randn (4L, 4L, dtype = torch.float64)).sum().backward ()
                Expect.isNotNull features.grad "features receive a gradient")
        }
    ]
