namespace Bake.Core.Interop

open System
open System.Globalization
open System.IO
open System.Runtime.InteropServices
open System.Text
open TorchSharp
open Bake.Core

/// <summary>A numeric table read from a CSV file: an optional header and row-major values.</summary>
[<NoComparison>]
type CsvTable =
    {
        /// <summary>The file the table was read from (full path), for messages.</summary>
        Path: string
        /// <summary>The column names when the first line is a header, else <c>None</c>.</summary>
        Header: string[] option
        /// <summary>The number of data rows (≥ 1).</summary>
        Rows: int
        /// <summary>The number of columns (≥ 1).</summary>
        Columns: int
        /// <summary>Row-major values, <c>Rows × Columns</c> of them.</summary>
        Values: float[]
        /// <summary>The 1-based line number in the file of each data row, for messages.</summary>
        Lines: int[]
    }

/// <summary>Numeric CSV files: one row per sample, comma-separated, invariant culture (<c>.</c> as the decimal
/// separator), with an optional header line.</summary>
/// <remarks>The first non-empty line is a header when none of its cells is a number (e.g. <c>f0,f1,f2</c>);
/// a first line mixing numbers and text is a data line with a bad cell. Cells may be surrounded by spaces;
/// header names may be double-quoted. <c>nan</c>, <c>inf</c>, <c>-inf</c>, <c>NaN</c> and <c>Infinity</c> are
/// numbers (NumPy and .NET spellings). Empty lines at the end of the file are ignored, anywhere else they are
/// an error. Every error is a <see cref="T:Bake.Core.BakeException"/> naming the file, line and column.</remarks>
[<RequireQualifiedAccess>]
module Csv =

    let private parseNumber (cell: string) : float voption =
        let cell = cell.Trim()
        match cell.ToLowerInvariant() with
        | "inf" | "+inf" | "infinity" | "+infinity" -> ValueSome Double.PositiveInfinity
        | "-inf" | "-infinity" -> ValueSome Double.NegativeInfinity
        | "nan" | "+nan" | "-nan" -> ValueSome Double.NaN
        | _ ->
            match Double.TryParse(cell, NumberStyles.Float, CultureInfo.InvariantCulture) with
            | true, value -> ValueSome value
            | _ -> ValueNone

    let private unquote (cell: string) =
        let cell = cell.Trim()
        if cell.Length >= 2 && cell.StartsWith '"' && cell.EndsWith '"' then cell.Substring(1, cell.Length - 2) else cell

    let private fail (path: string) (message: string) = raise (BakeException($"{path}: {message}"))

    let private openRead (path: string) : StreamReader =
        let full = Path.GetFullPath path
        try
            new StreamReader(full, UTF8Encoding(false), true)
        with
        | :? FileNotFoundException
        | :? DirectoryNotFoundException -> fail full "file not found"
        | :? UnauthorizedAccessException
        | :? IOException as e -> raise (BakeException($"cannot read {full}: {e.Message}", e))

    /// <summary>Reads a numeric CSV file with its optional header.</summary>
    /// <exception cref="T:Bake.Core.BakeException">The file is missing, empty, has only a header, has rows of
    /// different lengths, an empty line inside the data, or a cell that is not a number.</exception>
    [<CompiledName("ReadTable")>]
    let readTable (path: string) : CsvTable =
        let full = Path.GetFullPath path
        use reader = openRead full
        let values = ResizeArray<float>()
        let lines = ResizeArray<int>()
        let mutable header = None
        let mutable columns = -1
        let mutable columnsLine = 0
        let mutable pendingEmpty = 0 // line number of the first empty line not yet followed by data
        let mutable lineNumber = 0
        let mutable line = reader.ReadLine()
        while not (isNull line) do
            lineNumber <- lineNumber + 1
            if String.IsNullOrWhiteSpace line then
                if pendingEmpty = 0 then pendingEmpty <- lineNumber
            else
                if pendingEmpty <> 0 then
                    fail full $"line {pendingEmpty} is empty: expected {columns} comma-separated numbers (empty lines are allowed only at the end)"
                let cells = line.Split ','
                let parsed = cells |> Array.map parseNumber
                if columns < 0 && parsed |> Array.forall ValueOption.isNone then
                    header <- Some(cells |> Array.map unquote)
                    columns <- cells.Length
                    columnsLine <- lineNumber
                else
                    if columns < 0 then
                        columns <- cells.Length
                        columnsLine <- lineNumber
                    elif cells.Length <> columns then
                        fail full $"line {lineNumber} has {cells.Length} columns, expected {columns} (as on line {columnsLine})"
                    for column in 0 .. cells.Length - 1 do
                        match parsed[column] with
                        | ValueSome value -> values.Add value
                        | ValueNone ->
                            let shown = if cells[column].Trim() = "" then "an empty cell" else $"'{cells[column].Trim()}'"
                            fail full $"line {lineNumber}, column {column + 1}: {shown} is not a number (expected an invariant-culture number such as -1.5e-3)"
                    lines.Add lineNumber
            line <- reader.ReadLine()
        if lineNumber = 0 || columns < 0 then fail full "the file is empty: expected one row of comma-separated numbers per sample"
        if lines.Count = 0 then fail full $"the file has a header (line {columnsLine}) but no data rows"
        { Path = full; Header = header; Rows = lines.Count; Columns = columns; Values = values.ToArray(); Lines = lines.ToArray() }

    /// <summary>Reads a numeric CSV file as a fresh float64 matrix, rows × columns, on the CPU, owned by the caller
    /// (the header, if any, is skipped).</summary>
    /// <exception cref="T:Bake.Core.BakeException">See <see cref="M:Bake.Core.Interop.Csv.ReadTable(System.String)"/>.</exception>
    [<CompiledName("Read")>]
    let read (path: string) : torch.Tensor =
        let table = readTable path
        torch.tensor (table.Values, ReadOnlySpan<int64>([| int64 table.Rows; int64 table.Columns |]), dtype = torch.float64)

    let private format (value: float) : string =
        if Double.IsNaN value then "nan"
        elif Double.IsPositiveInfinity value then "inf"
        elif Double.IsNegativeInfinity value then "-inf"
        else value.ToString("R", CultureInfo.InvariantCulture)

    let private format32 (value: float32) : string =
        if Single.IsFinite value then value.ToString("R", CultureInfo.InvariantCulture) else format (float value)

    /// <summary>Writes a matrix (rows ≥ 1, columns ≥ 1) as CSV, atomically, without a header: one line per row,
    /// invariant culture, shortest round-trip formatting in the tensor's own precision (float32 tensors are
    /// written with float32 precision, everything else as float64); non-finite values as <c>nan</c>,
    /// <c>inf</c>, <c>-inf</c>.</summary>
    /// <remarks>Reading the file back gives float64 values equal to the written ones (after a cast to float32
    /// for float32 tensors). The tensor is not modified.</remarks>
    /// <exception cref="T:System.ArgumentException">The tensor is not a matrix with at least one row and column.</exception>
    /// <exception cref="T:Bake.Core.BakeException">The file cannot be written.</exception>
    [<CompiledName("Write")>]
    let write (path: string, matrix: torch.Tensor) : unit =
        Tensors.requireMatrix "matrix" matrix
        if matrix.shape[0] < 1L || matrix.shape[1] < 1L then
            invalidArg "matrix" $"a CSV file needs at least one row and one column, got {Tensors.describe matrix}"
        let rows = int matrix.shape[0]
        let columns = int matrix.shape[1]
        let cells : int -> string =
            use _ = torch.no_grad ()
            if matrix.dtype = torch.float32 then
                let values = (use c = matrix.detach().cpu().contiguous() in c.data<float32>().ToArray())
                fun i -> format32 values[i]
            else
                let values = (use c = matrix.detach().cpu().to_type(torch.float64).contiguous() in c.data<float>().ToArray())
                fun i -> format values[i]
        Files.writeAtomic path (fun stream ->
            use writer = new StreamWriter(stream, UTF8Encoding(false), 1 <<< 16, leaveOpen = true)
            writer.NewLine <- "\n"
            for row in 0 .. rows - 1 do
                for column in 0 .. columns - 1 do
                    if column > 0 then writer.Write ','
                    writer.Write(cells (row * columns + column))
                writer.WriteLine())
