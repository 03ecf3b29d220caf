/// The figures Trainer.run draws into a run directory (Plots.summaryFigures): after the last epoch, and after others
/// when drawing costs at most 2% of the time since the last drawing.
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
        test "loss.png and accuracy.png are drawn by the end of the run" {
            withRunDir (fun dir ->
                let drawnAt = ResizeArray<bool>()
                let record event =
                    match event with
                    | EpochFinished _ -> drawnAt.Add(File.Exists(Path.Combine(dir, "loss.png")) && File.Exists(Path.Combine(dir, "accuracy.png")))
                    | _ -> ()
                runTiny dir [] record CancellationToken.None |> ignore
                // A tiny epoch takes far less than 50 drawings: the first is not drawn after (unless the machine
                // stalls for 12 s), the last always is.
                Expect.hasLength drawnAt 2 "two epochs reported"
                Expect.isTrue drawnAt[1] "both figures exist when the last epoch is reported"
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
