namespace Bake.Core.Interop

open System
open System.Globalization
open System.IO
open System.Runtime.InteropServices
open System.Text
open TorchSharp
open Bake.Core

/// <summary>The matrix file formats Bake reads and writes, chosen by file extension.</summary>
type MatrixFormat =
    /// <summary><c>.csv</c>: numeric CSV, read as float64.</summary>
    | CsvFormat
    /// <summary><c>.npy</c>: NumPy array, float32 or float64.</summary>
    | NpyFormat

/// <summary>2-D float matrices (rows = samples) in CSV or NumPy <c>.npy</c> files, by extension.</summary>
[<RequireQualifiedAccess>]
module MatrixFiles =

    /// <summary>The format of a path from its extension (case-insensitive): <c>.csv</c> or <c>.npy</c>.</summary>
    /// <exception cref="T:Bake.Core.UsageException">Any other extension.</exception>
    [<CompiledName("FormatOf")>]
    let formatOf (path: string) : MatrixFormat =
        match Path.GetExtension(path).ToLowerInvariant() with
        | ".csv" -> CsvFormat
        | ".npy" -> NpyFormat
        | "" -> raise (UsageException $"{path}: no file extension: expected .csv or .npy to choose the matrix format")
        | other -> raise (UsageException $"{path}: unknown matrix file extension '{other}': expected .csv or .npy")

    /// <summary>Reads a matrix as a fresh tensor on the CPU, owned by the caller: float64 from CSV, the file's dtype
    /// from <c>.npy</c>.</summary>
    /// <exception cref="T:Bake.Core.UsageException">The extension is neither <c>.csv</c> nor <c>.npy</c>.</exception>
    /// <exception cref="T:Bake.Core.BakeException">The file is missing or malformed (the message names the file and
    /// where).</exception>
    [<CompiledName("Read")>]
    let read (path: string) : torch.Tensor =
        match formatOf path with
        | CsvFormat -> Csv.read path
        | NpyFormat -> Npy.read path

    /// <summary>Writes a matrix atomically in the format of the extension (see <see cref="M:Bake.Core.Interop.Csv.Write(System.String,TorchSharp.torch.Tensor)"/>
    /// and <see cref="M:Bake.Core.Interop.Npy.Write(System.String,TorchSharp.torch.Tensor)"/>).</summary>
    /// <exception cref="T:Bake.Core.UsageException">The extension is neither <c>.csv</c> nor <c>.npy</c>.</exception>
    [<CompiledName("Write")>]
    let write (path: string, matrix: torch.Tensor) : unit =
        match formatOf path with
        | CsvFormat -> Csv.write (path, matrix)
        | NpyFormat -> Npy.write (path, matrix)
