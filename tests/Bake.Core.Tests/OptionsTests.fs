module Bake.Core.Tests.OptionsTests

open Expecto
open Bake.Core
open Bake.Core.Tests.TestUtil

let problems (validated: Result<'T, string list>) =
    match validated with
    | Ok _ -> []
    | Error problems -> problems

let rejects (name: string) (validated: Result<'T, string list>) (fragment: string) =
    test name {
        let found = problems validated
        Expect.hasLength found 1 "exactly one problem"
        Expect.stringContains found.Head fragment "the message names the field"
    }

[<Tests>]
let tests =
    testList "Options validation" [
        test "paper defaults: τ = 4, ω = 0.5, λ = 1, closed form" {
            Expect.equal BakeOptions.Default { Temperature = 4.0; Omega = 0.5; Lambda = 1.0; Propagation = ClosedForm } "defaults"
            Expect.isOk (Validate.bake BakeOptions.Default) "defaults are valid"
            Expect.isOk (Validate.labelSmoothing LabelSmoothingOptions.Default) "LS defaults"
            Expect.isOk (Validate.tfKdReg TfKdRegOptions.Default) "Tf-KD defaults"
            Expect.isOk (Validate.csKd CsKdOptions.Default) "CS-KD defaults"
            Expect.isOk (Validate.psKd PsKdOptions.Default) "PS-KD defaults"
            Expect.isOk (Validate.dlb DlbOptions.Default) "DLB defaults"
        }
        testList "BAKE" [
            rejects "τ = 0" (Validate.bake { BakeOptions.Default with Temperature = 0.0 }) "Temperature = 0"
            rejects "τ = NaN" (Validate.bake { BakeOptions.Default with Temperature = nan }) "Temperature = NaN"
            rejects "ω = 1" (Validate.bake { BakeOptions.Default with Omega = 1.0 }) "singular"
            rejects "ω = -0.5" (Validate.bake { BakeOptions.Default with Omega = -0.5 }) "Omega = -0.5"
            rejects "ω = 2" (Validate.bake { BakeOptions.Default with Omega = 2.0 }) "[0, 1)"
            rejects "λ = -1" (Validate.bake { BakeOptions.Default with Lambda = -1.0 }) "Lambda = -1"
            rejects "0 steps" (Validate.bake { BakeOptions.Default with Propagation = Steps 0 }) "steps = 0"
            test "every invalid field is reported at once" {
                let found = problems (Validate.bake { Temperature = -1.0; Omega = 1.0; Lambda = -2.0; Propagation = Steps -3 })
                Expect.hasLength found 4 "four problems"
            }
            test "orThrow lists every problem in one ArgumentException" {
                let error =
                    throwsWith<System.ArgumentException> (fun () ->
                        Validate.bake { BakeOptions.Default with Temperature = 0.0; Lambda = -1.0 }
                        |> Validate.orThrow "BAKE options" |> ignore)
                Expect.stringContains error.Message "Temperature" "τ"
                Expect.stringContains error.Message "Lambda" "λ"
            }
        ]
        testList "label smoothing" [
            rejects "α = 1" (Validate.labelSmoothing { Alpha = 1.0 }) "Alpha = 1"
            rejects "α = -0.1" (Validate.labelSmoothing { Alpha = -0.1 }) "Alpha = -0.1"
        ]
        testList "Tf-KD_reg" [
            rejects "α = 1.5" (Validate.tfKdReg { TfKdRegOptions.Default with Alpha = 1.5 }) "Alpha = 1.5"
            rejects "T = 0" (Validate.tfKdReg { TfKdRegOptions.Default with Temperature = 0.0 }) "Temperature = 0"
            rejects "multiplier = 0" (Validate.tfKdReg { TfKdRegOptions.Default with Multiplier = 0.0 }) "Multiplier = 0"
            rejects "correct = 0" (Validate.tfKdReg { TfKdRegOptions.Default with Correct = 0.0 }) "Correct = 0"
        ]
        testList "CS-KD" [
            rejects "T = -4" (Validate.csKd { CsKdOptions.Default with Temperature = -4.0 }) "Temperature = -4"
            rejects "λ = -1" (Validate.csKd { CsKdOptions.Default with Lambda = -1.0 }) "Lambda = -1"
            rejects "PS-KD α = 1.5" (Validate.psKd { Alpha = 1.5 }) "Alpha = 1.5"
            rejects "DLB τ = 0" (Validate.dlb { DlbOptions.Default with Temperature = 0.0 }) "Temperature = 0"
            rejects "DLB α = -1" (Validate.dlb { DlbOptions.Default with Weight = -1.0 }) "Weight = -1"
        ]
    ]
