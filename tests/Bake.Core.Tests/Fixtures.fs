/// Shared, lazily built fixtures for the tests of what reads trained runs (prediction, export, figures).
module Bake.Core.Tests.Fixtures

open System
open System.IO
open System.Threading
open Bake.Core.Tests.TrainerTests

/// One tiny BAKE run (cnn-tiny, 12 images per class of the embedded dataset, 1 epoch), trained on first use and
/// deleted when the test process exits. Treat it as read-only.
let trainedRun : Lazy<string> =
    lazy
        (let dir = Directory.CreateTempSubdirectory("bake-fixture-run-").FullName
         AppDomain.CurrentDomain.ProcessExit.Add(fun _ -> try Directory.Delete(dir, true) with _ -> ())
         runTiny dir [ "OPTIM.MAX_EPOCH=1" ] ignore CancellationToken.None |> ignore
         dir)
