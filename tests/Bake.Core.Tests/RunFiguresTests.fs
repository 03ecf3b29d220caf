/// The figures Trainer.run draws into a run directory after each epoch (Plots.summaryFigures).
module Bake.Core.Tests.RunFiguresTests

open System.IO
open System.Threading
open Expecto
open SkiaSharp
open Bake.Core
open Bake.Core.Reporting
open Bake.Core.Tests.TrainerTests

[<Tests>]
let tests =
    testSequenced <| testList "Run figures" [
        test "loss.png and accuracy.png are drawn after every epoch" {
            withRunDir (fun dir ->
                let drawnAt = ResizeArray<bool>()
                let record event =
                    match event with
                    | EpochFinished _ -> drawnAt.Add(File.Exists(Path.Combine(dir, "loss.png")) && File.Exists(Path.Combine(dir, "accuracy.png")))
                    | _ -> ()
                runTiny dir [] record CancellationToken.None |> ignore
                Expect.sequenceEqual drawnAt [ true; true ] "both figures exist when each epoch is reported"
                for name in [ "loss.png"; "accuracy.png" ] do
                    use bitmap = SKBitmap.Decode(Path.Combine(dir, name))
                    Expect.isNotNull bitmap $"{name} decodes"
                    Expect.equal (bitmap.Width, bitmap.Height) (Plots.Width, Plots.Height) $"{name} size")
        }

        test "a figure that cannot be written does not stop training" {
            withRunDir (fun dir ->
                // A folder where loss.png should go makes the atomic rename fail.
                Directory.CreateDirectory(Path.Combine(dir, "loss.png")) |> ignore
                let outcome = runTiny dir [] ignore CancellationToken.None
                Expect.hasLength outcome.History 2 "both epochs trained"
                Expect.isTrue (Directory.Exists(Path.Combine(dir, "loss.png"))) "the folder is left alone")
        }
    ]
