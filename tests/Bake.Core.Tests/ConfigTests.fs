module Bake.Core.Tests.ConfigTests

open System.IO
open Expecto
open Bake.Core
open Bake.Core.Tests.TestUtil

let officialConfigs =
    let dir = Path.Combine(repoRoot, "..", "shared", "official-configs")
    if Directory.Exists dir then Directory.GetFiles(dir, "*.yaml") |> Array.sort else [||]

let shippedConfigs = Directory.GetFiles(Path.Combine(repoRoot, "configs"), "*.yaml", SearchOption.AllDirectories) |> Array.sort

let problemsOf (result: Result<'T, string list>) = match result with Ok _ -> [] | Error p -> p

[<Tests>]
let tests =
    testList "Config (pycls schema)" [
        test "defaults → file → --set overrides, in that order" {
            let config =
                Configs.defaultJob [ "TRAIN.OMEGA=0.3"; "optim.max_epoch=2" ]
            Expect.equal (BakeMethod.OMEGA.Of config) 0.3 "--set wins over the file"
            Expect.equal (Keys.OPTIM.MAX_EPOCH.Of config) 2 "keys are case-insensitive on --set"
            Expect.equal (BakeMethod.TEMP.Of config) 4.0 "file value"
            Expect.equal (Keys.BN.EPS.Of config) 1e-5 "default"
        }

        test "an unknown key is an error that suggests the nearest valid key" {
            let problems = problemsOf (Configs.applyYaml "x.yaml" "TRAIN:\n  OMGEA: 0.5\n" ConfigSchema.defaults)
            Expect.equal problems [ "x.yaml: unknown key TRAIN.OMGEA (did you mean TRAIN.OMEGA?)" ] "one problem with a suggestion"
        }

        test "every problem is listed at once" {
            let problems =
                problemsOf (Configs.applyYaml "x.yaml" "TRAIN:\n  OMEGA: abc\n  BATCH_SIZE: 1.5\n  FOO: 1\nOPTIM:\n  NESTEROV: maybe\n" ConfigSchema.defaults)
            Expect.hasLength problems 4 "four problems"
            Expect.stringContains problems[0] "TRAIN.OMEGA = 'abc'" "names key and value"
        }

        test "invalid YAML names the file and the line" {
            let problems = problemsOf (Configs.applyYaml "bad.yaml" "TRAIN:\n  OMEGA: [0.5\n" ConfigSchema.defaults)
            Expect.isNonEmpty problems "rejected"
            Expect.stringContains problems[0] "bad.yaml" "names the file"
        }

        test "--set needs KEY=VALUE" {
            let problems = problemsOf (Configs.applyOverrides [ "TRAIN.OMEGA" ] ConfigSchema.defaults)
            Expect.stringContains problems.Head "KEY=VALUE" "explains the form"
        }

        test "the resolved YAML reads back to the same config" {
            let config = Configs.defaultJob [ "TRAIN.OMEGA=0.25"; "OPTIM.STEPS=[0, 3, 6]"; "ANYNET.BOT_MULS=[0.5, 0.25]" ]
            match Configs.applyYaml "config.yaml" (Configs.toYaml config) ConfigSchema.defaults with
            | Ok back -> Expect.equal back.Values config.Values "round trip"
            | Error problems -> failtestf "%A" problems
        }

        test "validation lists every invalid setting" {
            let config = Configs.defaultJob [ "TRAIN.OMEGA=1"; "TRAIN.BATCH_SIZE=129"; "OPTIM.MOMENTUM=1.5"; "METHOD.NAME=cskd"; "TRAIN.USE_BAKE=False"; "TRAIN.IS_CUTMIX=True" ]
            let problems = problemsOf (Settings.ofConfig config)
            Expect.isTrue (problems.Length >= 4) $"several problems: {problems}"
            Expect.exists problems (fun p -> p.Contains "TRAIN.BATCH_SIZE = 129 must be even for cskd") "batch layout of the method"
            Expect.exists problems (fun p -> p.Contains "TRAIN.INTRA_IMGS = 1 must be 0 for cskd") "M of the method"
            Expect.exists problems (fun p -> p.Contains "MOMENTUM") "momentum"
            Expect.exists problems (fun p -> p.Contains "TRAIN.IS_CUTMIX = True is supported with vanilla and bake, not with cskd") "CutMix rule of the table"
            // An unknown method is a parse error listing the table's names.
            match Configs.applyOverrides [ "METHOD.NAME=bogus" ] ConfigSchema.defaults with
            | Ok _ -> failtest "METHOD.NAME=bogus was accepted"
            | Error problems ->
                Expect.exists problems (fun p -> p.Contains "METHOD.NAME = 'bogus' is invalid" && p.Contains "pskd, dlb") "lists the methods"
        }

        test "pycls settings Bake's models cannot honour are refused with the reason" {
            let effnet = [ "MODEL.TYPE=effnet"; "EN.DEPTHS=[1, 2, 2, 3, 3, 4, 1]"; "EN.WIDTHS=[16, 24, 40, 80, 112, 192, 320]"
                           "EN.KERNELS=[3, 3, 5, 3, 5, 5, 3]"; "EN.STRIDES=[1, 2, 2, 2, 1, 2, 1]"; "EN.EXP_RATIOS=[1, 6, 6, 6, 6, 6, 6]" ]
            Expect.equal (Settings.modelName (Configs.defaultJob effnet)) (Ok "efficientnet-b0") "B0 maps"
            match Settings.modelName (Configs.defaultJob (effnet @ [ "EN.DROPOUT_RATIO=0.3" ])) with
            | Error message -> Expect.stringContains message "DROPOUT_RATIO" "names the key"
            | Ok name -> failtestf "mapped to %s" name
            let problems = problemsOf (Settings.ofConfig (Configs.defaultJob [ "TEST.WEIGHTS=w.pth" ]))
            Expect.exists problems (fun p -> p.Contains "TEST.WEIGHTS" && p.Contains "evaluate those weights") "TEST.WEIGHTS points to evaluation"
        }

        test "the default job is BAKE, M = 1, small CNN, embedded data" {
            let settings = Settings.ofConfigOrThrow (Configs.defaultJob [])
            Expect.equal settings.Method.Name "bake" "method"
            Expect.equal settings.IntraImages 1 "M"
            Expect.equal settings.Anchors 64 "N̂"
            Expect.equal settings.Model "cnn" "model"
            Expect.equal settings.Dataset "embedded" "dataset"
        }

        testList "official BAKE configs map onto Bake's models, or fail clearly" [
            if officialConfigs.Length = 0 then
                yield test "../shared/official-configs" { skiptest "../shared/official-configs is absent (development and CI only)" }
            for path in officialConfigs do
              yield
                test (Path.GetFileName path) {
                    let config = Configs.load (path, [])
                    let name = Path.GetFileName path
                    match Settings.ofConfig config with
                    | Ok settings ->
                        let expected =
                            if name.Contains "R-50" then "resnet50" elif name.Contains "R-101" then "resnet101"
                            elif name.Contains "R-152" then "resnet152" elif name.Contains "X-101" then "resnext101-32x4d"
                            elif name.Contains "X-152" then "resnext152-32x4d" elif name.Contains "M-V2" then "mobilenetv2"
                            elif name.Contains "EN-B0" then "efficientnet-b0" else "?"
                        Expect.equal settings.Model expected "model mapping"
                        Expect.equal settings.Method.Name (if name.StartsWith "BAKE-" then "bake" else "vanilla") "method"
                        if name.StartsWith "BAKE-" then Expect.equal settings.IntraImages 1 "INTRA_IMGS"
                    | Error problems ->
                        Expect.isTrue (name.Contains "S-50" || name.Contains "S-101") $"only ResNeSt may fail: {problems}"
                        Expect.stringContains problems.Head "ResNeSt is not implemented" "clear error"
                }
        ]

        testList "shipped configs validate" [
            for path in shippedConfigs ->
                test (Path.GetRelativePath(repoRoot, path)) {
                    match Settings.ofConfig (Configs.load (path, [])) with
                    | Ok _ -> ()
                    | Error problems -> failtestf "%s: %A" path problems
                }
        ]
    ]
