namespace Bake.Core.Data

open System
open System.IO
open Bake.Core

/// <summary>Human class names for ImageNet-style folders whose classes are WordNet ids (<c>n01443537</c>): the first
/// synonym of each wnid in the folder's <c>words.txt</c> (TinyImageNet: <c>wnid TAB synonyms</c>, comma-separated)
/// or <c>LOC_synset_mapping.txt</c> (ImageNet's Kaggle download: <c>wnid SPACE synonyms</c>), so
/// <c>n01443537</c> is named <c>goldfish</c> in <c>bake data info</c>, training reports, checkpoints and
/// <c>bake predict</c>.</summary>
/// <remarks>Only the names change: labels stay in the order of the sorted wnids, so a model trained when the classes
/// were named by wnid keeps its meaning. Checkpoints record the names they were trained with.</remarks>
[<RequireQualifiedAccess>]
module SynsetNames =

    /// <summary>The mapping files looked for in a dataset's root folder, in this order (the first present is used).</summary>
    let fileNames = [ "words.txt"; "LOC_synset_mapping.txt" ]

    /// <summary>The first synonym of every wanted wnid listed in a mapping file: each line is a wnid, a tab or space,
    /// then comma-separated synonyms. Lines of other wnids are not checked; the first line of a wnid wins.</summary>
    /// <exception cref="T:Bake.Core.BakeException">The file cannot be read, or a wanted wnid's line has no name; the
    /// message names the file and line.</exception>
    [<CompiledName("Read")>]
    let read (path: string) (wanted: Set<string>) : Map<string, string> =
        let lines =
            try File.ReadLines path |> Array.ofSeq
            with
            | :? IOException
            | :? UnauthorizedAccessException as e -> DataFile.fail path $"cannot read: {e.Message}"
        let mutable found = Map.empty
        lines
        |> Array.iteri (fun index line ->
            let text = line.Trim()
            if text <> "" then
                let cut = text.IndexOfAny [| '\t'; ' ' |]
                let wnid = if cut < 0 then text else text.Substring(0, cut)
                if wanted.Contains wnid && not (found.ContainsKey wnid) then
                    let first = if cut < 0 then "" else text.Substring(cut + 1).Split(',').[0].Trim()
                    if first = "" then
                        DataFile.fail path $"line {index + 1}: expected '<wnid><TAB or space><name>[, <synonym>…]' for class {wnid}, got '{line}'"
                    found <- found.Add(wnid, first))
        found

    /// <summary>Names for the classes of a dataset folder (wnids or other folder names, in label order).</summary>
    /// <param name="root">The dataset folder, where <c>words.txt</c> or <c>LOC_synset_mapping.txt</c> may be.</param>
    /// <param name="classes">The class folder names (wnids), in label order; not modified.</param>
    /// <returns>The names in label order, and a note for the dataset's <c>Source</c> saying where they came from (None
    /// when no mapping file exists or none of the classes is in it: the folder names are kept). A class missing from
    /// the file keeps its folder name. When several classes share a first synonym (ignoring case; ImageNet has two
    /// "crane"s), each of them is named "synonym (wnid)", so the names stay unique and do not depend on the order.</returns>
    [<CompiledName("ForClasses")>]
    let forClasses (root: string) (classes: string[]) : string[] * string option =
        match fileNames |> List.map (fun name -> Path.Combine(root, name)) |> List.tryFind File.Exists with
        | None -> Array.copy classes, None
        | Some path ->
            let names = read path (set classes)
            if names.IsEmpty then
                Array.copy classes, None
            else
                let first = classes |> Array.map (fun c -> names |> Map.tryFind c |> Option.defaultValue c)
                let shared =
                    first
                    |> Array.countBy (fun name -> name.ToLowerInvariant())
                    |> Array.filter (fun (_, count) -> count > 1)
                    |> Array.map fst
                    |> set
                let unique =
                    Array.map2
                        (fun (wnid: string) (name: string) ->
                            if shared.Contains(name.ToLowerInvariant()) && names.ContainsKey wnid then $"{name} ({wnid})" else name)
                        classes
                        first
                let missing = classes |> Array.filter (names.ContainsKey >> not) |> Array.length
                let sharedNote =
                    if shared.IsEmpty then ""
                    else
                        let shown = shared |> Seq.truncate 3 |> String.concat ", "
                        $"; names shared by several classes carry their wnid ({shown})"
                let missingNote = if missing = 0 then "" else $"; {missing} class(es) not in it keep their folder name"
                unique, Some $"class names: first synonyms in {Path.GetFileName path}{sharedNote}{missingNote}"
