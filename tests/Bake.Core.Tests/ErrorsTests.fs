module Bake.Core.Tests.ErrorsTests

open System.IO
open Expecto
open FsCheck.FSharp
open Bake.Core
open Bake.Core.Tests.TestUtil

let private word = Gen.elements [ 'a'; 'b'; 'c' ] |> Gen.arrayOf |> Gen.map System.String
let private threeWords = Gen.zip3 word word word |> Arb.fromGen

[<Tests>]
let tests =
    testList "Errors" [
        testList "Spelling" [
            test "known distances" {
                Expect.equal (Spelling.distance ("kitten", "sitting")) 3 "two substitutions and an insertion"
                Expect.equal (Spelling.distance ("", "abc")) 3 "insertions only"
                Expect.equal (Spelling.distance ("TRAIN.OMEGA", "TRAIN.OMEGA")) 0 "identical"
            }
            testPropertyWithConfig { FsCheckConfig.defaultConfig with maxTest = 200 } "a metric: zero on equal strings, symmetric, triangle inequality"
                (Prop.forAll threeWords (fun (a, b, c) ->
                    Expect.equal (Spelling.distance (a, a)) 0 "d(a, a) = 0"
                    Expect.equal (Spelling.distance (a, b)) (Spelling.distance (b, a)) "symmetric"
                    Expect.isLessThanOrEqual (Spelling.distance (a, c)) (Spelling.distance (a, b) + Spelling.distance (b, c)) "triangle"
                    Expect.isLessThanOrEqual (Spelling.distance (a, b)) (max a.Length b.Length) "at most the longer length"))
            test "nearest picks the closest candidate, the first of ties" {
                Expect.equal (Spelling.nearest ([ "resnet18"; "resnet50"; "cnn" ], "resnet5")) "resnet50" "one edit away"
                Expect.equal (Spelling.nearest ([ "ab"; "ba" ], "aa")) "ab" "first of two at distance 1"
            }
        ]
        test "a writer that fails leaves neither the target nor a temporary file" {
            let dir = Directory.CreateTempSubdirectory("bake-atomic-").FullName
            try
                let target = Path.Combine(dir, "out.txt")
                throwsWith<System.InvalidOperationException> (fun () ->
                    Files.writeAtomic target (fun stream ->
                        stream.WriteByte 1uy
                        invalidOp "the writer failed")) |> ignore
                Expect.isEmpty (Directory.GetFiles dir) "nothing left in the directory"
            finally
                Directory.Delete(dir, true)
        }
    ]
