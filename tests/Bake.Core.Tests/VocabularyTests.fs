/// One vocabulary per concept: every value a choice key documents is accepted (and trains, dry-run), every value it
/// accepts is documented, defaults are declared once and the C# façade reads the same ones.
module Bake.Core.Tests.VocabularyTests

open System.IO
open Expecto
open Bake.Core
open Bake.Core.Data
open Bake.Core.Tests.TestUtil

/// Settings that let every method of the table validate (CS-KD and DLB need M = 0).
let private neutral = [ "TRAIN.INTRA_IMGS=0"; "TRAIN.USE_BAKE=False" ]

[<Tests>]
let tests =
    testList "Vocabulary" [
        testList "every documented value of every choice key is accepted by a dry run" [
            for spec in ConfigSchema.keys |> List.filter (fun k -> not k.Choices.IsEmpty) do
                for choice in spec.Choices ->
                    test $"{spec.Key} = '{choice}'" {
                        let config = Configs.defaultJob (neutral @ [ $"{spec.Key}={choice}" ])
                        match Settings.ofConfig config with
                        | Ok settings -> Expect.isNonEmpty (DryRun.describe (config, settings)) "dry run"
                        | Error problems -> failtestf "%s = %s rejected: %A" spec.Key choice problems
                        Expect.stringContains (Configs.toYaml config) $"{spec.Key.Substring(spec.Key.IndexOf '.' + 1)}: " "written back"
                    }
        ]

        test "a value a choice key does not document is refused, naming every documented one" {
            for spec in ConfigSchema.keys |> List.filter (fun k -> not k.Choices.IsEmpty) do
                match Configs.applyOverrides [ $"{spec.Key}=not-a-{spec.Key}" ] ConfigSchema.defaults with
                | Ok _ -> failtestf "%s accepted an undocumented value" spec.Key
                | Error [ problem ] ->
                    for choice in spec.Choices |> List.filter ((<>) "") do
                        Expect.stringContains problem choice $"{spec.Key} lists {choice}"
                | Error problems -> failtestf "one problem expected: %A" problems
        }

        test "DATA.FORMAT's names are the loader's own, and parse into its formats" {
            Expect.sequenceEqual Keys.DATA.FORMAT.Spec.Choices ("auto" :: (DataFormat.All |> List.map (fun f -> f.Name))) "the loader's list"
            for format in DataFormat.All do
                let settings = Settings.ofConfigOrThrow (Configs.defaultJob [ $"DATA.FORMAT={format.Name.ToUpperInvariant()}" ])
                Expect.equal settings.Format (Some format) $"{format.Name}, case-insensitively"
            Expect.isNone (Settings.ofConfigOrThrow (Configs.defaultJob [])).Format "auto detects"
        }

        test "a forced CIFAR format loads (training on a CIFAR-10 binary folder)" {
          withTempDir (fun root ->
            CifarTests.writeCifar10Binary root
            let out = Path.Combine(root, "run")
            let config =
                Configs.defaultJob
                    [ "TRAIN.DATASET=" + root; "DATA.FORMAT=cifar10-binary"; "MODEL.TYPE=cnn-tiny"; "OPTIM.MAX_EPOCH=1"
                      "TRAIN.BATCH_SIZE=8"; "DATA_LOADER.NUM_WORKERS=0"; "LOGGING.TENSORBOARD=False"; "OUT_DIR=" + out ]
            let settings = Settings.ofConfigOrThrow config
            Expect.equal settings.Format (Some DataFormat.Cifar10Binary) "forced"
            let outcome = Trainer.run (config, settings, false, null, System.Threading.CancellationToken.None)
            Expect.hasLength outcome.History 1 "trained an epoch"
            Expect.hasLength outcome.Classes 10 "CIFAR-10's classes"
            // The same folder forced as another layout fails naming the missing file, not silently.
            let wrong = Configs.defaultJob [ "TRAIN.DATASET=" + root; "DATA.FORMAT=cifar100-binary"; "OUT_DIR=" + Path.Combine(root, "wrong") ]
            throwsWith<BakeException> (fun () -> Trainer.run (wrong, Settings.ofConfigOrThrow wrong, false, null, System.Threading.CancellationToken.None) |> ignore)
            |> ignore)
        }

        test "dataset names are listed once: the fetcher's catalogue and TRAIN.DATASET's documentation use the loader's list" {
            let fetched = Fetch.catalogue |> List.map (fun d -> d.Name) |> List.sort
            Expect.sequenceEqual fetched (Datasets.knownNames |> List.filter ((<>) Datasets.EmbeddedName) |> List.sort) "catalogue = named datasets"
            for name in Datasets.knownNames do
                Expect.stringContains Keys.TRAIN.DATASET.Spec.Doc name $"TRAIN.DATASET documents {name}"
        }

        test "method defaults are the option records' and the C# façade's" {
            Expect.equal BakeMethod.OMEGA.Default BakeOptions.Default.Omega "ω"
            Expect.equal BakeMethod.TEMP.Default BakeOptions.Default.Temperature "τ"
            Expect.equal BakeMethod.LAMBDA.Default BakeOptions.Default.Lambda "λ"
            Expect.equal BakeMethod.STEPS.Default BakeOptions.DefaultSteps "steps"
            let csharp = Bake.BakeOptions()
            Expect.equal csharp.Omega BakeMethod.OMEGA.Default "C# ω"
            Expect.equal csharp.Temperature BakeMethod.TEMP.Default "C# τ"
            Expect.equal csharp.Lambda BakeMethod.LAMBDA.Default "C# λ"
            Expect.equal csharp.Steps BakeMethod.STEPS.Default "C# steps"
            Expect.equal PsKd.ALPHA.Default PsKdOptions.Default.Alpha "PS-KD α_T"
            Expect.equal Dlb.TEMP.Default DlbOptions.Default.Temperature "DLB τ"
            Expect.equal Dlb.WEIGHT.Default DlbOptions.Default.Weight "DLB α"
        }

        test "a C# caller that sets BAKE options keeps METHOD.STEPS unless it asks for steps" {
            use defaults = new Bake.BakeTrainer(Bake.TrainerOptions(Bake = Bake.BakeOptions(Omega = 0.3)))
            Expect.stringContains defaults.ResolvedConfig "  STEPS: 3\n" "closed form: the schema's default stays"
            use steps = new Bake.BakeTrainer(Bake.TrainerOptions(Bake = Bake.BakeOptions(Propagation = Bake.PropagationForm.Steps, Steps = 5)))
            Expect.stringContains steps.ResolvedConfig "  STEPS: 5\n" "steps asked for"
        }

        test "every method of the table is in the C# façade's list and in bake train --help" {
            Expect.sequenceEqual (Bake.BakeTrainer.Methods |> Seq.map (fun p -> p.Key)) Methods.names "C#"
            for name in Methods.names do
                Expect.stringContains Bake.Cli.TrainCommand.example name $"help lists {name}"
        }

        test "C# entry points translate usage errors the same way: ArgumentException naming the parameter" {
            let e = throwsWith<System.ArgumentException> (fun () -> Bake.Evaluator.Evaluate(Fixtures.trainedRun.Value, "no-such-dataset") |> ignore)
            Expect.equal e.ParamName "dataset" "Evaluator.Evaluate's parameter"
            Expect.stringContains e.Message "unknown dataset 'no-such-dataset'" "the core's message"
            withTempDir (fun root ->
                use trainer = new Bake.BakeTrainer(Bake.TrainerOptions(OutputDirectory = Path.Combine(root, "run"), Resume = true))
                let failure =
                    try trainer.TrainAsync().Wait(); None
                    with :? System.AggregateException as a -> Some a.InnerException
                match failure with
                | Some(:? System.ArgumentException as e) ->
                    Expect.equal e.ParamName "resume" "names the parameter"
                    Expect.stringContains e.Message "no checkpoint" "says why"
                | other -> failtestf "expected an ArgumentException, got %A" other)
        }
    ]
