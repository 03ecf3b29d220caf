module Bake.Core.Tests.EvalCommandTests

open System.IO
open Expecto
open Bake.Core
open Bake.Core.Tests.TestUtil
open Bake.Core.Tests.Fixtures

[<Tests>]
let tests =
    testSequenced <| testList "bake eval" [
        test "evaluates a run's final model and foreign weights; its mistakes exit 2 (usage) or 1 (files)" {
            withTempDir (fun dir ->
                let run = trainedRun.Value
                let code, stdout, _ = bake [ "eval"; "--checkpoint"; run; "--dataset"; "embedded"; "--workers"; "1" ]
                Expect.equal code 0 "exit 0"
                Expect.stringContains stdout "top-1" "prints the metrics"
                Expect.stringContains stdout "per-class top-1:" "and the per-class table"
                let weights = Path.Combine(dir, "w.safetensors")
                Checkpoints.export (run, "safetensors", Some weights) |> ignore
                let code, weightsOut, _ = bake [ "eval"; "--weights"; weights; "--model"; "cnn-tiny"; "--dataset"; "embedded"; "--workers"; "1" ]
                Expect.equal code 0 "exit 0 for --weights"
                let top1 (text: string) = text.Substring(text.IndexOf "top-1", 14)
                Expect.equal (top1 weightsOut) (top1 stdout) "the same weights give the same top-1 either way"
                expectExit 2 [ "eval" ] "give --checkpoint PATH"
                expectExit 2 [ "eval"; "--checkpoint"; run; "--weights"; weights ] "not both"
                expectExit 2 [ "eval"; "--weights"; weights ] "needs --model NAME and --dataset SPEC"
                expectExit 2 [ "eval"; "--checkpoint"; run; "--fgsm"; "0.01,abc" ] "'abc' is invalid"
                expectExit 2 [ "eval"; "--checkpoint"; run; "--corruption"; "fog" ] "'fog' is invalid"
                expectExit 1 [ "eval"; "--checkpoint"; dir ] "no Bake checkpoint"
                expectExit 2 [ "eval"; "--checkpoint"; run; "--batch-size"; "0" ] "--batch-size 0"
                expectExit 2 [ "eval"; "--checkpoint"; run; "--workers"; "-1" ] "--workers -1"
                expectExit 2 [ "eval"; "--checkpoint"; run; "--fgsm"; "0.1"; "--dataset"; "embedded" ] "--dataset cannot be combined"
                expectExit 1 [ "eval"; "--weights"; Path.Combine(dir, "missing.pth"); "--model"; "cnn-tiny"; "--dataset"; "embedded" ] "missing.pth")
        }
    ]

[<Tests>]
let trainTests =
    testSequenced <| testList "bake train" [
        test "--dry-run prints the resolved config and the model; its mistakes exit 2 with one line" {
            withTempDir (fun dir ->
                let code, stdout, _ = bake [ "train"; "--dry-run"; "--set"; "TRAIN.OMEGA=0.3" ]
                Expect.equal code 0 "exit 0"
                Expect.stringContains stdout "  OMEGA: 0.3" "the override is in the resolved config"
                Expect.stringContains stdout "parameters" "the model summary"
                expectExit 2 [ "train"; "--set"; "TRAIN.OMGEA=0.3" ] "did you mean TRAIN.OMEGA?"
                expectExit 2 [ "train"; "--config"; Path.Combine(dir, "missing.yaml") ] "does not exist"
                expectExit 2 [ "train"; "--set"; "TRAIN.OMEGA=1" ] "singular"
                expectExit 2 [ "train"; "--frobnicate" ] "unrecognized argument"
                expectExit 1 [ "train"; "--out"; "/proc/bake-cannot-write"; "--set"; "MODEL.TYPE=cnn-tiny" ] "cannot write the run directory"
                expectExit 0 [ "version" ] "libtorch loaded")
        }
    ]
