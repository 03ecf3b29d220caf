module Bake.Core.Tests.GoldenTests

open System.IO
open System.Text.Json
open Expecto
open TorchSharp
open Bake.Core
open Bake.Core.Tests.TestUtil

/// Values computed by tests/fixtures/make_golden.py with PyTorch in the official formulation (float64).
let golden = lazy (JsonDocument.Parse(File.ReadAllText(Path.Combine(System.AppContext.BaseDirectory, "fixtures", "golden.json"))))

let floats (element: JsonElement) (name: string) = [| for v in element.GetProperty(name).EnumerateArray() -> v.GetDouble() |]
let number (element: JsonElement) (name: string) = element.GetProperty(name).GetDouble()
let integer (element: JsonElement) (name: string) = element.GetProperty(name).GetInt32()
let matrix (element: JsonElement) (name: string) rows cols = tensor float64 rows cols (floats element name)
let labels (element: JsonElement) = torch.tensor [| for v in element.GetProperty("labels").EnumerateArray() -> v.GetInt64() |]

let tolerance = 1e-6

[<Tests>]
let tests =
    testList "Golden values from PyTorch (float64, 1e-6)" ([
        for case in golden.Force().RootElement.GetProperty("bake").EnumerateArray() ->
            let n, k, d = integer case "n", integer case "k", integer case "d"
            let omegaText, tauText = number case "omega", number case "temperature"
            test $"BAKE N={n} K={k} D={d} ω={omegaText} τ={tauText}" {
                scoped (fun () ->
                    let omega, temperature = number case "omega", number case "temperature"
                    let features = matrix case "features" n d
                    let logits = (matrix case "logits" n k).requires_grad_ true
                    let options = { BakeOptions.Default with Omega = omega; Temperature = temperature; Lambda = number case "lambda" }
                    let affinity = Affinity.normalized features
                    let probs = Propagation.temperedProbabilities (logits, temperature)
                    expectClose tolerance "Â" affinity (matrix case "affinity" n n)
                    expectClose tolerance "P" probs (matrix case "probs" n k)
                    expectClose tolerance "Q (Eq. 9)" (Propagation.softTargets (features, logits, options)) (matrix case "targets" n k)
                    expectClose tolerance "Q (Eq. 6)" (Propagation.oneStep (affinity, probs, omega)) (matrix case "one_step" n k)
                    let loss = Losses.bake (features, logits, labels case, options)
                    Expect.floatClose { absolute = tolerance; relative = 0.0 } (loss.Terms[0].Value.item<float> ()) (number case "ce") "CE"
                    Expect.floatClose { absolute = tolerance; relative = 0.0 } (loss.Terms[1].Value.item<float> ()) (number case "kd") "KD"
                    Expect.floatClose { absolute = tolerance; relative = 0.0 } (loss.Total.item<float> ()) (number case "total") "total"
                    loss.Total.backward ()
                    expectClose tolerance "d total / d logits" logits.grad (matrix case "grad_logits" n k))
            }
      ] @ [
        test "baselines: label smoothing, Tf-KD_reg, CS-KD" {
            scoped (fun () ->
                let case = golden.Force().RootElement.GetProperty("baselines")
                let n, k = integer case "n", integer case "k"
                let logits = matrix case "logits" n k
                let partners = matrix case "partner_logits" n k
                let close (actual: Loss) name =
                    Expect.floatClose { absolute = tolerance; relative = 0.0 } (actual.Total.item<float> ()) (number case name) name
                close (Losses.labelSmoothing (logits, labels case, LabelSmoothingOptions.Default)) "label_smoothing"
                close (Losses.tfKdReg (logits, labels case, TfKdRegOptions.Default)) "tfkd_reg"
                close (Losses.csKd (logits, partners, labels case, CsKdOptions.Default)) "cskd")
        }
    ])
