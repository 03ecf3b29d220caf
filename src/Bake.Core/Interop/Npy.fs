namespace Bake.Core.Interop

open System
open System.Globalization
open System.IO
open System.Runtime.InteropServices
open System.Text
open TorchSharp
open Bake.Core

/// <summary>NumPy <c>.npy</c> files holding a 2-D float32 or float64 array (format versions 1.0, 2.0 and 3.0).</summary>
/// <remarks>Format: <c>\x93NUMPY</c>, major and minor version bytes, the header length (uint16 little-endian in
/// 1.0, uint32 in 2.0 and 3.0), a Python dict literal with <c>descr</c>, <c>fortran_order</c> and <c>shape</c>
/// (Latin-1 in 1.0 and 2.0, UTF-8 in 3.0), then the raw data. Only little-endian <c>&lt;f4</c> and <c>&lt;f8</c> of
/// rank 2 are accepted; Fortran-order arrays are transposed into row-major order on reading.</remarks>
[<RequireQualifiedAccess>]
module Npy =

    let private magic = [| 0x93uy; byte 'N'; byte 'U'; byte 'M'; byte 'P'; byte 'Y' |]

    /// Values of the header dict literal that NumPy writes.
    type private PyValue =
        | PyString of string
        | PyBool of bool
        | PyTuple of int64 list
        | PyOther of string

    /// A parser for the subset of Python literals NumPy puts in the header: a dict of string keys whose values
    /// are strings, booleans or tuples of integers; anything else (e.g. a structured dtype's list) is kept as text.
    let private parseHeader (fail: string -> exn) (text: string) : Map<string, PyValue> =
        let mutable i = 0
        let skipSpace () =
            while i < text.Length && Char.IsWhiteSpace text[i] do
                i <- i + 1
        let expect (c: char) =
            skipSpace ()
            if i >= text.Length || text[i] <> c then raise (fail $"malformed header dict {text.Trim()}: expected '{c}' at character {i}")
            i <- i + 1
        let peek () =
            skipSpace ()
            if i < text.Length then text[i] else '\000'
        let parseString () =
            let quote = peek ()
            if quote <> '\'' && quote <> '"' then raise (fail $"malformed header dict {text.Trim()}: expected a quoted string at character {i}")
            i <- i + 1
            let start = i
            while i < text.Length && text[i] <> quote do
                i <- i + 1
            if i >= text.Length then raise (fail $"malformed header dict {text.Trim()}: unterminated string")
            i <- i + 1
            text.Substring(start, i - 1 - start)
        // Skips a balanced bracketed value we do not interpret, e.g. a structured dtype's list.
        let skipBalanced () =
            let start = i
            let mutable depth = 0
            let mutable finished = false
            while not finished && i < text.Length do
                match text[i] with
                | '(' | '[' | '{' -> depth <- depth + 1; i <- i + 1
                | ')' | ']' | '}' when depth > 0 -> depth <- depth - 1; i <- i + 1; finished <- depth = 0
                | ',' | '}' when depth = 0 -> finished <- true
                | '\'' | '"' -> parseString () |> ignore
                | _ -> i <- i + 1
            text.Substring(start, i - start).Trim()
        let parseValue () =
            match peek () with
            | '\'' | '"' -> PyString(parseString ())
            | '(' ->
                let start = i
                i <- i + 1
                let items = ResizeArray<int64>()
                let mutable ok = true
                while ok && peek () <> ')' do
                    let numberStart = i
                    while i < text.Length && (Char.IsDigit text[i]) do
                        i <- i + 1
                    match Int64.TryParse(text.AsSpan(numberStart, i - numberStart), NumberStyles.None, CultureInfo.InvariantCulture) with
                    | true, n -> items.Add n
                    | _ -> ok <- false
                    if ok && peek () = ',' then i <- i + 1
                if ok then
                    expect ')'
                    PyTuple(List.ofSeq items)
                else
                    i <- start
                    PyOther(skipBalanced ())
            | _ when text.AsSpan(i).StartsWith "True" -> i <- i + 4; PyBool true
            | _ when text.AsSpan(i).StartsWith "False" -> i <- i + 5; PyBool false
            | _ -> PyOther(skipBalanced ())
        expect '{'
        let mutable entries = Map.empty
        while peek () <> '}' do
            let key = parseString ()
            expect ':'
            entries <- entries.Add(key, parseValue ())
            if peek () = ',' then i <- i + 1
            elif peek () <> '}' then raise (fail $"malformed header dict {text.Trim()}: expected ',' or '}}' at character {i}")
        expect '}'
        entries

    let private shapeText (dims: int64 list) =
        match dims with
        | [ single ] -> $"({single},)"
        | _ -> "(" + (dims |> List.map string |> String.concat ", ") + ")"

    let private readExactly (stream: Stream) (buffer: Span<byte>) : int =
        let mutable total = 0
        let mutable finished = false
        while not finished && total < buffer.Length do
            let n = stream.Read(buffer.Slice total)
            if n = 0 then finished <- true else total <- total + n
        total

    /// <summary>Reads a 2-D <c>.npy</c> array as a fresh matrix on the CPU, owned by the caller, in the file's dtype
    /// (float32 for <c>&lt;f4</c>, float64 for <c>&lt;f8</c>), always row-major.</summary>
    /// <exception cref="T:Bake.Core.BakeException">The file is missing, not a <c>.npy</c> file, of an unknown
    /// format version, has a malformed header, an unsupported dtype, a rank other than 2, or fewer or more data
    /// bytes than its shape needs (the message gives both counts).</exception>
    [<CompiledName("Read")>]
    let read (path: string) : torch.Tensor =
        let full = Path.GetFullPath path
        let failWith (message: string) : exn = BakeException($"{full}: {message}")
        let fail message : 'a = raise (failWith message)
        if not BitConverter.IsLittleEndian then fail "reading .npy files needs a little-endian machine"
        use stream =
            try
                new FileStream(full, FileMode.Open, FileAccess.Read, FileShare.Read, 1 <<< 16)
            with
            | :? FileNotFoundException
            | :? DirectoryNotFoundException -> fail "file not found"
            | :? UnauthorizedAccessException
            | :? IOException as e -> raise (BakeException($"cannot read {full}: {e.Message}", e))
        let prefix = Array.zeroCreate<byte> 8
        let got = readExactly stream (Span prefix)
        if got < 8 || not (prefix.AsSpan(0, 6).SequenceEqual(ReadOnlySpan magic)) then
            fail "not a NumPy .npy file: it does not start with the magic string \\x93NUMPY"
        let major, minor = prefix[6], prefix[7]
        let lengthBytes, encoding =
            match major with
            | 1uy -> 2, Encoding.Latin1
            | 2uy -> 4, Encoding.Latin1
            | 3uy -> 4, Encoding.UTF8
            | _ -> fail $"unsupported .npy format version {major}.{minor}: expected 1.0, 2.0 or 3.0"
        let lengthBuffer = Array.zeroCreate<byte> lengthBytes
        if readExactly stream (Span lengthBuffer) < lengthBytes then fail "truncated .npy header: the header length is missing"
        let headerLength =
            if lengthBytes = 2 then int64 (BitConverter.ToUInt16(lengthBuffer, 0)) else int64 (BitConverter.ToUInt32(lengthBuffer, 0))
        let dataStart = 8L + int64 lengthBytes + headerLength
        if headerLength > stream.Length - 8L - int64 lengthBytes then
            fail $"truncated .npy header: it declares {headerLength} header bytes, the file has {stream.Length - 8L - int64 lengthBytes} after the length field"
        let headerBytes = Array.zeroCreate<byte> (int headerLength)
        readExactly stream (Span headerBytes) |> ignore
        let header = parseHeader failWith (encoding.GetString headerBytes)
        let descr =
            match header.TryFind "descr" with
            | Some(PyString d) -> d
            | Some(PyOther d) -> fail $"unsupported dtype {d} (a structured dtype): expected '<f4' (float32) or '<f8' (float64)"
            | _ -> fail "malformed header: no 'descr' string"
        let dtype, itemSize =
            match descr with
            | "<f4" -> torch.float32, 4
            | "<f8" -> torch.float64, 8
            | other -> fail $"unsupported dtype '{other}': expected '<f4' (float32) or '<f8' (float64); convert with arr.astype('<f8')"
        let fortran =
            match header.TryFind "fortran_order" with
            | Some(PyBool b) -> b
            | _ -> fail "malformed header: no 'fortran_order' True/False"
        let rows, columns =
            match header.TryFind "shape" with
            | Some(PyTuple [ rows; columns ]) -> rows, columns
            | Some(PyTuple dims) ->
                let hint = if dims.Length = 1 then "; save arr.reshape(-1, 1) for a column or arr.reshape(1, -1) for a row" else ""
                fail $"the array has shape {shapeText dims} ({dims.Length}-D): expected a 2-D matrix, one row per sample{hint}"
            | _ -> fail "malformed header: no 'shape' tuple"
        let count = rows * columns
        if count > int64 Array.MaxLength then fail $"the array {shapeText [ rows; columns ]} is too large to load ({count} elements)"
        let expected = count * int64 itemSize
        let actual = stream.Length - dataStart
        if actual <> expected then
            let what = if actual < expected then "truncated data" else "unexpected trailing bytes"
            fail $"{what}: shape {shapeText [ rows; columns ]} of '{descr}' needs {expected} data bytes after the {dataStart}-byte header, the file has {actual}"
        // Fortran order stores the transpose row-major; read it as columns × rows and transpose.
        let dims = if fortran then [| columns; rows |] else [| rows; columns |]
        Tensors.scoped (fun () ->
            let loaded =
                // TorchSharp cannot wrap an empty array: an empty matrix (0 rows or columns) is made directly.
                if count = 0L then
                    torch.zeros (dims, dtype = dtype)
                elif dtype = torch.float32 then
                    let values = Array.zeroCreate<float32> (int count)
                    readExactly stream (MemoryMarshal.AsBytes(Span values)) |> ignore
                    torch.tensor (values, ReadOnlySpan dims, dtype = torch.float32)
                else
                    let values = Array.zeroCreate<float> (int count)
                    readExactly stream (MemoryMarshal.AsBytes(Span values)) |> ignore
                    torch.tensor (values, ReadOnlySpan dims, dtype = torch.float64)
            if fortran then loaded.t().contiguous() else loaded)

    /// <summary>The format 1.0 header NumPy 1.24 writes for a C-order matrix: the dict with sorted keys, room for
    /// the first dimension to grow to 21 digits, then spaces and a newline up to a multiple of 64 bytes.</summary>
    let private headerBytes (descr: string) (rows: int64) (columns: int64) : byte[] =
        let dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {columns}), }}"
        let dict = dict + String(' ', 21 - string(rows).Length)
        // magic (6) + version (2) + uint16 length (2) + dict + padding + newline = a multiple of 64.
        let padding = 64 - (10 + dict.Length + 1) % 64
        let length = dict.Length + padding + 1
        let bytes = Array.zeroCreate<byte> (10 + length)
        magic.CopyTo(bytes, 0)
        bytes[6] <- 1uy
        bytes[7] <- 0uy
        BitConverter.TryWriteBytes(Span(bytes, 8, 2), uint16 length) |> ignore
        Encoding.Latin1.GetBytes(dict + String(' ', padding) + "\n", 0, length, bytes, 10) |> ignore
        bytes

    /// <summary>Writes a float32 or float64 matrix as a C-order <c>.npy</c> file (format 1.0, as NumPy writes it),
    /// atomically, keeping the tensor's dtype (<c>&lt;f4</c> or <c>&lt;f8</c>). The tensor is not modified.</summary>
    /// <exception cref="T:System.ArgumentException">The tensor is not a float32 or float64 matrix.</exception>
    /// <exception cref="T:Bake.Core.BakeException">The file cannot be written.</exception>
    [<CompiledName("Write")>]
    let write (path: string, matrix: torch.Tensor) : unit =
        Tensors.requireMatrix "matrix" matrix
        if not BitConverter.IsLittleEndian then raise (PlatformNotSupportedException "writing .npy files needs a little-endian machine")
        let rows, columns = matrix.shape[0], matrix.shape[1]
        use _ = torch.no_grad ()
        let descr, toBytes =
            if matrix.dtype = torch.float32 then
                "<f4", fun (c: torch.Tensor) -> MemoryMarshal.AsBytes(ReadOnlySpan(c.data<float32>().ToArray())).ToArray()
            elif matrix.dtype = torch.float64 then
                "<f8", fun (c: torch.Tensor) -> MemoryMarshal.AsBytes(ReadOnlySpan(c.data<float>().ToArray())).ToArray()
            else
                invalidArg "matrix" $"only float32 and float64 matrices can be written as .npy, got {matrix.dtype}"
        let header = headerBytes descr rows columns
        let data =
            if matrix.numel () = 0L then Array.empty
            else (use c = matrix.detach().cpu().contiguous() in toBytes c)
        Files.writeAtomic path (fun stream ->
            stream.Write(header, 0, header.Length)
            stream.Write(data, 0, data.Length))
