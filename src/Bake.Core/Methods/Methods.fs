namespace Bake.Core

open System

/// <summary>The method table: every training method Bake knows, by name. <c>Settings</c> looks methods up here and
/// the trainer asks the entry for its sampler, its carried state and its loss.</summary>
[<RequireQualifiedAccess>]
module Methods =

    /// <summary>Every method, in the order of help texts.</summary>
    let all: MethodSpec list =
        [ Baselines.vanilla; Baselines.labelSmoothing; Baselines.tfKdReg; Baselines.csKd; BakeMethod.spec; PsKd.spec; Dlb.spec ]

    /// <summary>Their names.</summary>
    let names: string list = all |> List.map (fun m -> m.Name)

    /// <summary>METHOD.NAME: one of the table's names, or empty for pycls's switch TRAIN.USE_BAKE.</summary>
    let NAME =
        Key.choice "METHOD.NAME" "" (("", None) :: (all |> List.map (fun m -> m.Name, Some m)))
            "training method; empty = bake if TRAIN.USE_BAKE else vanilla"

    /// <summary>Every method's own keys and METHOD.NAME.</summary>
    let keys: ConfigKey list = NAME.Spec :: (all |> List.collect (fun m -> m.Keys))

    /// <summary>The entry of a name (case-insensitive).</summary>
    /// <exception cref="T:Bake.Core.UsageException">An unknown name; the message lists the known ones.</exception>
    [<CompiledName("Find")>]
    let find (name: string) : MethodSpec =
        match all |> List.tryFind (fun m -> String.Equals(m.Name, name.Trim(), StringComparison.OrdinalIgnoreCase)) with
        | Some m -> m
        | None -> raise (UsageException $"""unknown method '{name}': expected one of {String.concat ", " names}""")
