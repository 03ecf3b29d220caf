module Bake.Core.Tests.Generators

open FsCheck
open FsCheck.FSharp

/// A generated batch: N samples with D-dimensional features and K logits, plus ω and τ.
type Batch =
    { N: int
      K: int
      D: int
      Features: float[]
      Logits: float[]
      Omega: float
      Temperature: float }

    override this.ToString() =
        $"Batch(N={this.N}, K={this.K}, D={this.D}, ω={this.Omega}, τ={this.Temperature})"

let private bounded (lo: float) (hi: float) =
    Gen.choose (0, 100000) |> Gen.map (fun i -> lo + (hi - lo) * float i / 100000.0)

/// Batches with N in [minN, 32], K in [2, 20], D in [1, 16], ω in [0, 0.95], τ in [0.5, 8].
let batchesFrom (minN: int) : Gen<Batch> =
    gen {
        let! n = Gen.choose (minN, 32)
        let! k = Gen.choose (2, 20)
        let! d = Gen.choose (1, 16)
        let! features = Gen.arrayOfLength (n * d) (bounded -5.0 5.0)
        let! logits = Gen.arrayOfLength (n * k) (bounded -10.0 10.0)
        let! omega = bounded 0.0 0.95
        let! temperature = bounded 0.5 8.0
        return
            { N = n; K = k; D = d; Features = features; Logits = logits; Omega = omega; Temperature = temperature }
    }

/// Batches of every size the issue asks for, N in [1, 32].
let batches = Arb.fromGen (batchesFrom 1)

/// Batches with at least two samples (Â's row-sum property needs another sample).
let multiBatches = Arb.fromGen (batchesFrom 2)

/// A permutation of 0..n-1 drawn from a generated seed.
let permutation (seed: int) (n: int) : int64[] =
    let rng = System.Random seed
    Array.init n int64 |> Array.sortBy (fun _ -> rng.Next())
