module Bake.Core.Tests.MatrixFilesTests

open System
open System.Globalization
open System.IO
open Expecto
open FsCheck
open FsCheck.FSharp
open TorchSharp
open Bake.Core
open Bake.Core.Interop
open Bake.Core.Tests.TestUtil

let config = { FsCheckConfig.defaultConfig with maxTest = 60 }

let fixture name = Path.Combine(repoRoot, "tests", "fixtures", "npy", name)

/// value(i, j) = (i·columns + j − 5.5) / 3, the matrix make_npy_fixtures.py writes.
let fixtureValues rows columns =
    Array.init (rows * columns) (fun k -> (float k - 5.5) / 3.0)

let float64Matrix rows columns (values: float[]) =
    torch.tensor (values, ReadOnlySpan [| int64 rows; int64 columns |], dtype = torch.float64)

let float32Matrix rows columns (values: float32[]) =
    torch.tensor (values, ReadOnlySpan [| int64 rows; int64 columns |], dtype = torch.float32)

let doubles (t: torch.Tensor) = if t.numel () = 0L then [||] else (use c = t.cpu().contiguous() in c.data<float>().ToArray())
let singles (t: torch.Tensor) = if t.numel () = 0L then [||] else (use c = t.cpu().contiguous() in c.data<float32>().ToArray())

/// Equal values, any NaN equal to any NaN (NumPy and .NET need not keep NaN payloads).
let sameDoubles (actual: float[]) (expected: float[]) message =
    Expect.equal actual.Length expected.Length $"{message}: count"
    for i in 0 .. expected.Length - 1 do
        let ok = (Double.IsNaN actual[i] && Double.IsNaN expected[i]) || BitConverter.DoubleToInt64Bits actual[i] = BitConverter.DoubleToInt64Bits expected[i]
        if not ok then failtestf "%s: element %d is %.17g, expected %.17g" message i actual[i] expected[i]

let sameSingles (actual: float32[]) (expected: float32[]) message =
    sameDoubles (Array.map float actual) (Array.map float expected) message

/// Any 64-bit pattern (so NaN, ±∞, subnormals, ±0 and extremes all appear), from four 16-bit pieces.
let anyDouble =
    Gen.map4 (fun (a: int) (b: int) (c: int) (d: int) -> BitConverter.Int64BitsToDouble((int64 a <<< 48) ||| (int64 b <<< 32) ||| (int64 c <<< 16) ||| int64 d))
        (Gen.choose (0, 0xFFFF)) (Gen.choose (0, 0xFFFF)) (Gen.choose (0, 0xFFFF)) (Gen.choose (0, 0xFFFF))

let anySingle =
    Gen.map2 (fun (a: int) (b: int) -> BitConverter.Int32BitsToSingle((a <<< 16) ||| b)) (Gen.choose (0, 0xFFFF)) (Gen.choose (0, 0xFFFF))

/// Mostly ordinary numbers, sometimes any bit pattern.
let someDouble = Gen.frequency [ 3, Gen.choose (-100000, 100000) |> Gen.map (fun i -> float i / 977.0); 1, anyDouble ]

type Shaped<'T> =
    { Rows: int; Columns: int; Values: 'T[] }
    override this.ToString() = $"{this.Rows}×{this.Columns} {this.Values}"

let shaped minRows (element: Gen<'T>) =
    gen {
        let! rows = Gen.choose (minRows, 12)
        let! columns = Gen.choose (minRows, 9)
        let! values = Gen.arrayOfLength (rows * columns) element
        return { Rows = rows; Columns = columns; Values = values }
    }
    |> Arb.fromGen

let roundTrip (extension: string) (matrix: torch.Tensor) =
    withTempDir (fun dir ->
        let path = Path.Combine(dir, "m" + extension)
        MatrixFiles.write (path, matrix)
        MatrixFiles.read path)

/// Writes the shaped values as a matrix, reads the file back, and checks the dtype read and the shape.
let readBack (extension: string) (dtype: torch.ScalarType) (m: Shaped<'T>) (matrix: torch.Tensor) =
    let back = roundTrip extension matrix
    Expect.equal back.dtype dtype "dtype read"
    Expect.sequenceEqual back.shape [| int64 m.Rows; int64 m.Columns |] "shape"
    back

let writeText (dir: string) (name: string) (text: string) =
    let path = Path.Combine(dir, name)
    File.WriteAllText(path, text)
    path

/// The BakeException a CSV text causes, with the file path checked in its message.
let csvError (text: string) : string =
    withTempDir (fun dir ->
        let path = writeText dir "bad.csv" text
        let error = throwsWith<BakeException> (fun () -> Csv.read path |> ignore)
        Expect.stringContains error.Message path "names the file"
        error.Message)

let npyError (path: string) : string =
    let error = throwsWith<BakeException> (fun () -> Npy.read path |> ignore)
    Expect.stringContains error.Message (Path.GetFullPath path) "names the file"
    error.Message

let withBytes (bytes: byte[]) (check: string -> unit) =
    withTempDir (fun dir ->
        let path = Path.Combine(dir, "bad.npy")
        File.WriteAllBytes(path, bytes)
        check path)

[<Tests>]
let csvTests =
    testList "Csv" [
        testPropertyWithConfig config "float64 matrices round-trip exactly (NaN as NaN)" (Prop.forAll (shaped 1 someDouble) (fun m -> scoped (fun () ->
            let back = readBack ".csv" torch.float64 m (float64Matrix m.Rows m.Columns m.Values)
            sameDoubles (doubles back) m.Values "values")))

        testPropertyWithConfig config "float32 matrices round-trip to the same float32 values" (Prop.forAll (shaped 1 anySingle) (fun m -> scoped (fun () ->
            let back = readBack ".csv" torch.float64 m (float32Matrix m.Rows m.Columns m.Values)
            sameSingles (singles (back.to_type torch.float32)) m.Values "values")))

        test "numbers are written and read in invariant culture whatever the current culture" {
            scoped (fun () ->
                let saved = CultureInfo.CurrentCulture
                try
                    CultureInfo.CurrentCulture <- CultureInfo "de-DE"
                    withTempDir (fun dir ->
                        let path = Path.Combine(dir, "m.csv")
                        Csv.write (path, float64Matrix 1 2 [| 1.5; -2.25 |])
                        Expect.equal (File.ReadAllText path) "1.5,-2.25\n" "dot decimal separator, comma between cells"
                        sameDoubles (doubles (Csv.read path)) [| 1.5; -2.25 |] "read back")
                finally
                    CultureInfo.CurrentCulture <- saved)
        }

        test "a non-numeric first line is a header; names may be quoted" {
            withTempDir (fun dir ->
                let path = writeText dir "h.csv" "\"f0\", f1 ,f2\n1,2,3\n4,5,6\n"
                let table = Csv.readTable path
                Expect.equal table.Header (Some [| "f0"; "f1"; "f2" |]) "header names"
                Expect.equal (table.Rows, table.Columns) (2, 3) "2×3 data"
                Expect.equal table.Lines [| 2; 3 |] "line numbers of the data rows"
                sameDoubles table.Values [| 1.0; 2.0; 3.0; 4.0; 5.0; 6.0 |] "values")
        }

        test "np.savetxt output with a '# ' header reads as the matrix NumPy saved" {
            scoped (fun () ->
                let table = Csv.readTable (fixture "savetxt_3x4.csv")
                Expect.equal table.Header (Some [| "# a"; "b"; "c"; "d" |]) "the comment line is the header"
                sameDoubles (doubles (Csv.read (fixture "savetxt_3x4.csv"))) (fixtureValues 3 4) "values")
        }

        test "CRLF line endings, a BOM, spaces around cells, nan/inf spellings and trailing empty lines are accepted" {
            scoped (fun () ->
                withTempDir (fun dir ->
                    let path = Path.Combine(dir, "w.csv")
                    File.WriteAllText(path, " 1 , -inf\r\nnan,Infinity\r\n\r\n\r\n", Text.UTF8Encoding true)
                    let values = doubles (Csv.read path)
                    Expect.equal values[0] 1.0 "1"
                    Expect.isTrue (Double.IsNegativeInfinity values[1]) "-inf"
                    Expect.isTrue (Double.IsNaN values[2]) "nan"
                    Expect.isTrue (Double.IsPositiveInfinity values[3]) "Infinity"))
        }

        test "non-finite values are written as nan, inf and -inf" {
            withTempDir (fun dir ->
                let path = Path.Combine(dir, "n.csv")
                scoped (fun () -> Csv.write (path, float64Matrix 1 3 [| nan; infinity; -infinity |]))
                Expect.equal (File.ReadAllText path) "nan,inf,-inf\n" "NumPy spellings")
        }

        test "an empty file is rejected" {
            Expect.stringContains (csvError "") "empty" "says empty"
            Expect.stringContains (csvError "\n  \n") "empty" "blank lines only"
        }

        test "a header without data rows is rejected" {
            Expect.stringContains (csvError "a,b\n") "header (line 1) but no data rows" "says no data"
        }

        test "a ragged row names its line and both column counts" {
            let message = csvError "1,2,3\n4,5,6\n7,8\n"
            Expect.stringContains message "line 3 has 2 columns, expected 3 (as on line 1)" "line and counts"
        }

        test "a ragged row after a header compares with the header" {
            Expect.stringContains (csvError "a,b\n1,2,3\n") "line 2 has 3 columns, expected 2 (as on line 1)" "header width"
        }

        test "a non-numeric cell names its line, column and text" {
            Expect.stringContains (csvError "1,2\n3,abc\n") "line 2, column 2: 'abc' is not a number" "position"
            Expect.stringContains (csvError "1,2\n3,1,5\n") "line 2 has 3 columns" "a decimal comma splits the cell"
        }

        test "a first line mixing numbers and text is a bad data line, not a header" {
            Expect.stringContains (csvError "1,x\n3,4\n") "line 1, column 2: 'x' is not a number" "position"
        }

        test "an empty cell is reported as such" {
            Expect.stringContains (csvError "1,2\n3,\n") "line 2, column 2: an empty cell is not a number" "empty cell"
        }

        test "an empty line between data rows is rejected with its line number" {
            Expect.stringContains (csvError "1,2\n\n3,4\n") "line 2 is empty" "line 2"
        }

        test "a missing file is a BakeException naming it" {
            withTempDir (fun dir ->
                let path = Path.Combine(dir, "absent.csv")
                let error = throwsWith<BakeException> (fun () -> Csv.read path |> ignore)
                Expect.stringContains error.Message path "names the file"
                Expect.stringContains error.Message "not found" "says not found")
        }

        test "writing a matrix without rows or columns is refused" {
            withTempDir (fun dir ->
                scoped (fun () ->
                    let error = throwsWith<ArgumentException> (fun () -> Csv.write (Path.Combine(dir, "e.csv"), torch.zeros (0L, 3L)))
                    Expect.stringContains error.Message "[0×3]" "names the shape"
                    Expect.isFalse (File.Exists(Path.Combine(dir, "e.csv"))) "nothing written"))
        }
    ]

[<Tests>]
let npyTests =
    testList "Npy" [
        testPropertyWithConfig config "float64 matrices round-trip bit-exactly, shapes with 0 rows or columns included" (Prop.forAll (shaped 0 anyDouble) (fun m -> scoped (fun () ->
            let back = readBack ".npy" torch.float64 m (float64Matrix m.Rows m.Columns m.Values)
            sameDoubles (doubles back) m.Values "values")))

        testPropertyWithConfig config "float32 matrices round-trip bit-exactly as float32" (Prop.forAll (shaped 0 anySingle) (fun m -> scoped (fun () ->
            let back = readBack ".npy" torch.float32 m (float32Matrix m.Rows m.Columns m.Values)
            sameSingles (singles back) m.Values "values")))

        test "a non-contiguous (transposed) tensor is written in row-major order" {
            scoped (fun () ->
                let matrix = float64Matrix 3 4 (fixtureValues 3 4)
                let back = roundTrip ".npy" (matrix.t ())
                expectClose 0.0 "transpose written as its values" back (matrix.t ()))
        }

        testList "files written by NumPy 1.24 read as the matrix NumPy saved" [
            for name, rows, columns, dtype in
                [ "f8_3x4.npy", 3, 4, torch.float64
                  "f4_2x5.npy", 2, 5, torch.float32
                  "f8_3x4_v2.npy", 3, 4, torch.float64
                  "f4_2x5_v3.npy", 2, 5, torch.float32
                  "f8_3x4_fortran.npy", 3, 4, torch.float64
                  "f8_0x3.npy", 0, 3, torch.float64
                  "f8_12x1.npy", 12, 1, torch.float64 ] ->
                test name {
                    scoped (fun () ->
                        let matrix = Npy.read (fixture name)
                        Expect.equal matrix.dtype dtype "dtype"
                        Expect.sequenceEqual matrix.shape [| int64 rows; int64 columns |] "shape"
                        if dtype = torch.float64 then sameDoubles (doubles matrix) (fixtureValues rows columns) "values"
                        else sameSingles (singles matrix) (fixtureValues rows columns |> Array.map Operators.float32) "values")
                }
        ]

        testList "the writer produces the bytes NumPy writes" [
            for name, rows, columns, dtype in
                [ "f8_3x4.npy", 3, 4, torch.float64; "f4_2x5.npy", 2, 5, torch.float32; "f8_0x3.npy", 0, 3, torch.float64; "f8_12x1.npy", 12, 1, torch.float64 ] ->
                test name {
                    withTempDir (fun dir ->
                        let path = Path.Combine(dir, name)
                        scoped (fun () -> Npy.write (path, (float64Matrix rows columns (fixtureValues rows columns)).to_type dtype))
                        Expect.sequenceEqual (File.ReadAllBytes path) (File.ReadAllBytes(fixture name)) "byte for byte")
                }
        ]

        testList "unsupported dtypes are rejected naming the dtype" [
            for name, descr in [ "f2_2x2.npy", "'<f2'"; "i8_2x2.npy", "'<i8'"; "be_f8_2x2.npy", "'>f8'" ] ->
                test name {
                    let message = npyError (fixture name)
                    Expect.stringContains message $"unsupported dtype {descr}" "names the dtype"
                    Expect.stringContains message "'<f4' (float32) or '<f8' (float64)" "says what is accepted"
                }
        ]

        test "a structured dtype is rejected" {
            Expect.stringContains (npyError (fixture "structured.npy")) "structured dtype" "says structured"
        }

        test "a 1-D array is rejected with its shape and how to reshape it" {
            let message = npyError (fixture "f8_1d.npy")
            Expect.stringContains message "shape (5,) (1-D)" "names the shape"
            Expect.stringContains message "reshape(-1, 1)" "suggests a reshape"
        }

        test "a 3-D array is rejected with its shape" {
            Expect.stringContains (npyError (fixture "f8_2x2x2.npy")) "shape (2, 2, 2) (3-D)" "names the shape"
        }

        test "truncated data names expected and actual byte counts" {
            Expect.stringContains (npyError (fixture "f8_3x4_truncated.npy")) "truncated data: shape (3, 4) of '<f8' needs 96 data bytes after the 128-byte header, the file has 86" "byte counts"
        }

        test "trailing bytes after the data are rejected" {
            withBytes (Array.append (File.ReadAllBytes(fixture "f8_3x4.npy")) [| 0uy; 1uy |]) (fun path ->
                Expect.stringContains (npyError path) "needs 96 data bytes after the 128-byte header, the file has 98" "byte counts")
        }

        test "a file that is not .npy is rejected by its magic string" {
            withBytes (Text.Encoding.ASCII.GetBytes "1,2,3\n4,5,6\n") (fun path ->
                Expect.stringContains (npyError path) "does not start with the magic string" "magic")
            withBytes [| 0x93uy |] (fun path -> Expect.stringContains (npyError path) "magic string" "too short for a magic string")
        }

        test "an unknown format version is rejected" {
            let bytes = File.ReadAllBytes(fixture "f8_3x4.npy")
            bytes[6] <- 4uy
            withBytes bytes (fun path -> Expect.stringContains (npyError path) "unsupported .npy format version 4.0" "version")
        }

        test "a header cut short is rejected" {
            withBytes (Array.sub (File.ReadAllBytes(fixture "f8_3x4.npy")) 0 40) (fun path ->
                Expect.stringContains (npyError path) "truncated .npy header: it declares 118 header bytes, the file has 30" "header bytes")
            withBytes (Array.sub (File.ReadAllBytes(fixture "f8_3x4.npy")) 0 9) (fun path ->
                Expect.stringContains (npyError path) "the header length is missing" "length field")
        }

        test "a malformed header dict is rejected" {
            let bytes = File.ReadAllBytes(fixture "f8_3x4.npy")
            bytes[10] <- byte '['
            withBytes bytes (fun path -> Expect.stringContains (npyError path) "malformed header dict" "dict")
            let noShape = File.ReadAllBytes(fixture "f8_3x4.npy")
            let text = Text.Encoding.Latin1.GetString noShape
            let renamed = Text.Encoding.Latin1.GetBytes(text.Replace("'shape'", "'shapE'"))
            withBytes renamed (fun path -> Expect.stringContains (npyError path) "no 'shape' tuple" "missing key")
        }

        test "writing a non-float matrix is refused" {
            withTempDir (fun dir ->
                scoped (fun () ->
                    let error = throwsWith<ArgumentException> (fun () -> Npy.write (Path.Combine(dir, "i.npy"), torch.zeros (2L, 2L, dtype = torch.int64)))
                    Expect.stringContains error.Message "Int64" "names the dtype"))
        }
    ]

[<Tests>]
let matrixFileTests =
    testList "MatrixFiles" [
        test "the format follows the extension, case-insensitively" {
            Expect.equal (MatrixFiles.formatOf "a/b.CSV") CsvFormat ".CSV"
            Expect.equal (MatrixFiles.formatOf "b.npy") NpyFormat ".npy"
        }

        test "an unknown or missing extension is a UsageException naming the path" {
            withTempDir (fun dir ->
                scoped (fun () ->
                    for name in [ "m.txt"; "m.npz"; "m" ] do
                        let path = Path.Combine(dir, name)
                        let error = throwsWith<UsageException> (fun () -> MatrixFiles.read path |> ignore)
                        Expect.stringContains error.Message path "names the path"
                        Expect.stringContains error.Message "expected .csv or .npy" "says what is expected"
                        throwsWith<UsageException> (fun () -> MatrixFiles.write (path, torch.zeros (1L, 1L))) |> ignore
                        Expect.isFalse (File.Exists path) "nothing written"))
        }

        test "writes create the directory and leave no temporary files" {
            withTempDir (fun dir ->
                scoped (fun () ->
                    let path = Path.Combine(dir, "sub", "m.npy")
                    MatrixFiles.write (path, torch.ones (2L, 2L))
                    Expect.sequenceEqual (Directory.GetFiles(Path.Combine(dir, "sub")) |> Array.map Path.GetFileName) [| "m.npy" |] "only the output"))
        }

        test "a matrix read from .npy and written as CSV reads back equal" {
            withTempDir (fun dir ->
                scoped (fun () ->
                    let matrix = MatrixFiles.read (fixture "f8_3x4.npy")
                    let csv = Path.Combine(dir, "m.csv")
                    MatrixFiles.write (csv, matrix)
                    expectClose 0.0 "npy → csv" (MatrixFiles.read csv) matrix))
        }
    ]
