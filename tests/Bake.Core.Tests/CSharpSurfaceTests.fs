/// The C# façade (src/Bake.CSharp) follows the F# component design guidelines for .NET callers: no F# option, list,
/// function, tuple or union types (nor the core's F# records) in its public signatures.
module Bake.Core.Tests.CSharpSurfaceTests

open System
open System.Reflection
open Expecto
open TorchSharp

/// Every type a public member's signature mentions, generic arguments included.
let rec private typesIn (t: Type) : Type seq =
    seq {
        if t.HasElementType then yield! typesIn (t.GetElementType())
        elif t.IsGenericType then
            yield t.GetGenericTypeDefinition()
            for argument in t.GetGenericArguments() do
                yield! typesIn argument
        else yield t
    }

let private signatureTypes (m: MemberInfo) : Type seq =
    match m with
    | :? MethodBase as method ->
        seq {
            for p in method.GetParameters() -> p.ParameterType
            match method with
            | :? MethodInfo as mi -> yield mi.ReturnType
            | _ -> ()
        }
    | :? PropertyInfo as p -> Seq.singleton p.PropertyType
    | :? FieldInfo as f -> Seq.singleton f.FieldType
    | :? EventInfo as e -> Seq.singleton e.EventHandlerType
    | _ -> Seq.empty
    |> Seq.collect typesIn

[<Tests>]
let tests =
    testList "C# façade surface" [
        test "public signatures use .NET, TorchSharp and façade types only" {
            let facade = typeof<Bake.Predictor>.Assembly
            let offending =
                [ for t in facade.GetExportedTypes() do
                      for m in t.GetMembers(BindingFlags.Public ||| BindingFlags.Instance ||| BindingFlags.Static ||| BindingFlags.DeclaredOnly) do
                          for used in signatureTypes m do
                              let ns = if isNull used.Namespace then "" else used.Namespace
                              if ns.StartsWith "Microsoft.FSharp" || used.Assembly = typeof<Bake.Core.BakeOptions>.Assembly then
                                  yield $"{t.Name}.{m.Name}: {used.FullName}" ]
            Expect.isEmpty offending "F# or core types in the C# façade's public API"
            Expect.isGreaterThan (facade.GetExportedTypes().Length) 10 "the façade's types were found"
        }

        test "BakeTrainer: Dispose may be called twice; TrainAsync after Dispose is ObjectDisposedException" {
            let trainer = new Bake.BakeTrainer(Bake.TrainerOptions())
            trainer.Dispose()
            trainer.Dispose()
            Expect.throwsT<ObjectDisposedException> (fun () -> trainer.TrainAsync() |> ignore) "disposed"
        }

        test "BakeLossResult frees its tensors when disposed" {
            use features = torch.randn (6L, 4L)
            use logits = torch.randn (6L, 3L)
            use labels = torch.tensor [| 0L; 1L; 2L; 0L; 1L; 2L |]
            let result = Bake.BakeLoss.Compute(features, logits, labels)
            result.Dispose()
            Expect.isTrue (result.Total.IsInvalid && result.CrossEntropy.IsInvalid && result.Distillation.IsInvalid) "all three disposed"
        }
    ]
