module Bake.Core.Tests.TimingTests

open Expecto
open Bake.Core
open Bake.Core.Tests.TestUtil

/// Tiny enough to time in well under a second: the tiny CNN on 8 images of 8×8.
let private tiny = { TimingOptions.Default "cnn-tiny" with Batch = 8; ImageSize = 8; Iterations = 2; Warmup = 1 }

[<Tests>]
let tests =
    testSequenced <| testList "Timing" [
        test "BAKE timing measures every step, and the overhead is the soft-target + KD time over the CE step" {
            let r = Timing.measure tiny
            for name, ms in [ "forward", r.ForwardMs; "train step", r.TrainStepMs; "BAKE step", r.BakeStepMs.Value; "soft targets + KD", r.SoftTargetsKdMs.Value ] do
                Expect.isTrue (ms > 0.0 && System.Double.IsFinite ms) $"{name}: {ms} ms"
            Expect.floatClose Accuracy.veryHigh r.OverheadPercent.Value (100.0 * r.SoftTargetsKdMs.Value / r.TrainStepMs) "overhead"
            Expect.equal r.Parameters (Models.Classifier.parameterCount (Models.Models.create ("cnn-tiny", 10, 3, 8))) "parameter count"
        }

        test "vanilla timing has no BAKE rows" {
            let r = Timing.measure { tiny with Bake = None }
            Expect.isNone r.BakeStepMs "no BAKE step"
            Expect.isNone r.OverheadPercent "no overhead"
        }

        test "out-of-range options are usage errors naming every problem" {
            let error = throwsWith<UsageException> (fun () -> Timing.measure { tiny with Batch = 0; Iterations = 0 } |> ignore)
            Expect.stringContains error.Message "batch 0" "names the batch"
            Expect.stringContains error.Message "iterations 0" "names the iterations"
            let error = throwsWith<UsageException> (fun () -> Timing.measure { tiny with Bake = Some { BakeOptions.Default with Omega = 1.0 } } |> ignore)
            Expect.stringContains error.Message "Omega" "invalid BAKE options"
        }

        test "bake time prints the medians and the overhead; its mistakes exit 2 with one clear line" {
            let common = [ "time"; "--model"; "cnn-tiny"; "--image-size"; "8"; "--iterations"; "2" ]
            let code, stdout, _ = bake (common @ [ "--batch"; "8" ])
            Expect.equal code 0 "exit 0"
            for fragment in [ "batch 8 of 3×8×8"; "forward (eval, no grad)"; "forward + backward (CE)"; "forward + backward (BAKE)"; "% of a CE training step" ] do
                Expect.stringContains stdout fragment "printed"
            let code, stdout, _ = bake (common @ [ "--batch"; "8"; "--method"; "vanilla" ])
            Expect.equal code 0 "exit 0"
            Expect.isFalse (stdout.Contains "BAKE") "vanilla prints no BAKE rows"
            expectExit 0 [ "time"; "--help" ] "Example:\n  bake time --model cnn"
            expectExit 2 common "missing argument '--batch'"
            expectExit 2 (common @ [ "--batch"; "8"; "--method"; "cskd" ]) "--method cskd: expected bake or vanilla"
            expectExit 2 (common @ [ "--batch"; "0" ]) "batch 0: expected at least 1 image"
            expectExit 2 [ "time"; "--model"; "resnet19"; "--batch"; "2" ] "Did you mean 'resnet18'?"
        }

        test "bake info prints the model summary; unknown models and bad sizes exit 2" {
            let code, stdout, _ = bake [ "info"; "--model"; "cnn"; "--channels"; "1"; "--image-size"; "28"; "--classes"; "7" ]
            Expect.equal code 0 "exit 0"
            use model = Models.Models.create ("cnn", 7, 1, 28)
            Expect.stringContains stdout (Models.Models.describe model) "Models.describe"
            Expect.stringContains stdout "input: 1×28×28" "the input shape"
            expectExit 0 [ "info"; "--help" ] "Examples:\n  bake info --model resnet18"
            expectExit 2 [ "info"; "--model"; "resnet19" ] "Known models: cnn, cnn-tiny"
            expectExit 2 [ "info"; "--model"; "densenet121"; "--image-size"; "8" ] "needs images of at least 32×32 pixels"
            expectExit 2 [ "info"; "--model"; "cnn"; "--classes"; "0" ] "the number of classes must be at least 1"
            expectExit 2 [ "info" ] "missing argument '--model'"
        }
    ]
