namespace Bake.Core.Data

open System
open System.Text
open System.Collections.Generic
open Bake.Core

/// <summary>A value read from a Python pickle. Class instances are never constructed: a call recorded by REDUCE or
/// NEWOBJ stays a <c>Call</c> (callable, arguments, state), and only the few shapes Bake needs (numpy arrays, bytes
/// encoded by <c>_codecs.encode</c>) are interpreted afterwards. Reading a pickle therefore runs no code.</summary>
[<RequireQualifiedAccess; NoComparison; ReferenceEquality>]
type PickleValue =
    | None
    | Bool of bool
    | Int of int64
    | Float of float
    | Str of string
    | Bytes of byte[]
    | List of List<PickleValue>
    | Tuple of PickleValue[]
    | Dict of List<PickleValue * PickleValue>
    | Set of List<PickleValue>
    | Global of modul: string * name: string
    | Call of PickleCall

/// <summary>A recorded call <c>callable(*args)</c> and the state BUILD gave the result.</summary>
and [<NoComparison; ReferenceEquality>] PickleCall =
    { Callable: PickleValue
      Args: PickleValue[]
      mutable State: PickleValue option }

/// <summary>A minimal, safe reader of Python pickles (protocols 0–5, binary opcodes plus the common text ones), enough
/// for the dicts of numpy arrays and lists of the official CIFAR Python batches, whether written by Python 2
/// (<c>cPickle</c>, byte-string keys) or Python 3 (any protocol).</summary>
[<RequireQualifiedAccess>]
module Pickle =

    let private mark = PickleValue.Str "\u0000<mark>"

    /// <summary>Reads one pickle from <paramref name="bytes"/>; <paramref name="path"/> names the file in errors.</summary>
    /// <exception cref="T:Bake.Core.BakeException">An unsupported opcode, a truncated stream or an inconsistent stack;
    /// the message names the file, the opcode and its offset.</exception>
    [<CompiledName("Read")>]
    let read (path: string) (bytes: byte[]) : PickleValue =
        let stack = Stack<PickleValue>()
        let marks = Stack<int>()
        let memo = Dictionary<int64, PickleValue>()
        let mutable pos = 0
        let mutable opcodeAt = 0
        let fail (message: string) : 'a = DataFile.fail path $"pickle opcode at offset {opcodeAt}: {message}"
        let need n =
            // In 64 bits: a length near Int32.MaxValue must not wrap around and pass the check.
            if n < 0 || int64 pos + int64 n > int64 bytes.Length then
                fail $"truncated: {n} more bytes needed, the file ends at offset {bytes.Length}"
        let take n =
            need n
            let slice = bytes[pos .. pos + n - 1]
            pos <- pos + n
            slice
        let u8 () =
            need 1
            pos <- pos + 1
            int bytes[pos - 1]
        let u16 () = let lo = u8 () in lo ||| (u8 () <<< 8)
        let i32 () =
            need 4
            let v = BitConverter.ToInt32(ReadOnlySpan(bytes, pos, 4))
            pos <- pos + 4
            v
        let u64 () =
            need 8
            let v = BitConverter.ToInt64(ReadOnlySpan(bytes, pos, 8))
            pos <- pos + 8
            if v < 0L || v > int64 Int32.MaxValue then fail $"length {v} is out of range"
            int v
        let line () =
            let start = pos
            while (need 1; bytes[pos] <> 10uy) do
                pos <- pos + 1
            pos <- pos + 1
            Encoding.Latin1.GetString(bytes, start, pos - 1 - start).TrimEnd '\r'
        let pop () = if stack.Count = 0 then fail "stack underflow" else stack.Pop()
        let top () = if stack.Count = 0 then fail "stack underflow" else stack.Peek()
        let popMark () =
            if marks.Count = 0 then fail "no MARK for this opcode"
            let depth = marks.Pop()
            let items = Array.init (stack.Count - depth) (fun _ -> stack.Pop()) |> Array.rev
            items
        let push v = stack.Push v
        let littleEndianInt (data: byte[]) =
            if data.Length = 0 then 0L
            elif data.Length > 8 then fail $"integer of {data.Length} bytes is too large"
            else
                let mutable v = 0L
                for i in data.Length - 1 .. -1 .. 0 do
                    v <- (v <<< 8) ||| int64 data[i]
                // Sign-extend from the top byte.
                if data.Length < 8 && data[data.Length - 1] >= 0x80uy then v - (1L <<< (8 * data.Length)) else v
        let setItems (target: PickleValue) (items: PickleValue[]) =
            match target with
            | PickleValue.Dict d ->
                for i in 0 .. 2 .. items.Length - 2 do
                    d.Add((items[i], items[i + 1]))
            | _ -> fail "SETITEM(S) on a value that is not a dict"
        let appendItems (target: PickleValue) (items: PickleValue seq) =
            match target with
            | PickleValue.List l -> l.AddRange items
            | PickleValue.Set s -> s.AddRange items
            | _ -> fail "APPEND(S) on a value that is not a list"
        let mutable result = Option<PickleValue>.None
        while result.IsNone do
            opcodeAt <- pos
            if pos >= bytes.Length then fail "truncated: the pickle ends without STOP"
            let op = u8 ()
            match char op with
            | '\x80' -> u8 () |> ignore // PROTO
            | '\x95' -> u64 () |> ignore // FRAME (frames are only a buffering hint)
            | '.' -> result <- Some(pop ())
            | '(' -> marks.Push stack.Count
            | '0' -> pop () |> ignore
            | '1' -> popMark () |> ignore
            | '2' -> push (top ())
            | 'N' -> push PickleValue.None
            | '\x88' -> push (PickleValue.Bool true)
            | '\x89' -> push (PickleValue.Bool false)
            | 'J' -> push (PickleValue.Int(int64 (i32 ())))
            | 'K' -> push (PickleValue.Int(int64 (u8 ())))
            | 'M' -> push (PickleValue.Int(int64 (u16 ())))
            | '\x8a' -> push (PickleValue.Int(littleEndianInt (take (u8 ()))))
            | '\x8b' -> push (PickleValue.Int(littleEndianInt (take (i32 ()))))
            | 'I' ->
                match line () with
                | "00" -> push (PickleValue.Bool false)
                | "01" -> push (PickleValue.Bool true)
                | text ->
                    match Int64.TryParse text with
                    | true, v -> push (PickleValue.Int v)
                    | _ -> fail $"INT '{text}' is not an integer"
            | 'L' ->
                match Int64.TryParse(line().TrimEnd 'L') with
                | true, v -> push (PickleValue.Int v)
                | _ -> fail "LONG is not a 64-bit integer"
            | 'G' ->
                let raw = take 8
                Array.Reverse raw
                push (PickleValue.Float(BitConverter.ToDouble(raw, 0)))
            | 'F' ->
                match Double.TryParse(line (), Globalization.NumberStyles.Float, Globalization.CultureInfo.InvariantCulture) with
                | true, v -> push (PickleValue.Float v)
                | _ -> fail "FLOAT is not a number"
            // Python 2 `str` (byte strings) and Python 3 bytes.
            | 'U' -> push (PickleValue.Bytes(take (u8 ())))
            | 'T' -> push (PickleValue.Bytes(take (i32 ())))
            | 'C' -> push (PickleValue.Bytes(take (u8 ())))
            | 'B' -> push (PickleValue.Bytes(take (i32 ())))
            | '\x8e' -> push (PickleValue.Bytes(take (u64 ())))
            | '\x96' -> push (PickleValue.Bytes(take (u64 ())))
            | 'S' ->
                let text = line ()
                let unquoted = if text.Length >= 2 then text.Substring(1, text.Length - 2) else text
                push (PickleValue.Bytes(Encoding.Latin1.GetBytes(Text.RegularExpressions.Regex.Unescape unquoted)))
            | 'X' -> push (PickleValue.Str(Encoding.UTF8.GetString(take (i32 ()))))
            | '\x8c' -> push (PickleValue.Str(Encoding.UTF8.GetString(take (u8 ()))))
            | '\x8d' -> push (PickleValue.Str(Encoding.UTF8.GetString(take (u64 ()))))
            | 'V' -> push (PickleValue.Str(Text.RegularExpressions.Regex.Unescape(line ())))
            | ')' -> push (PickleValue.Tuple [||])
            | '\x85' -> push (PickleValue.Tuple [| pop () |])
            | '\x86' ->
                let b = pop ()
                let a = pop ()
                push (PickleValue.Tuple [| a; b |])
            | '\x87' ->
                let c = pop ()
                let b = pop ()
                let a = pop ()
                push (PickleValue.Tuple [| a; b; c |])
            | 't' -> push (PickleValue.Tuple(popMark ()))
            | ']' -> push (PickleValue.List(List()))
            | 'l' -> push (PickleValue.List(List(popMark ())))
            | '}' -> push (PickleValue.Dict(List()))
            | 'd' ->
                let items = popMark ()
                let d = PickleValue.Dict(List())
                setItems d items
                push d
            | '\x8f' -> push (PickleValue.Set(List()))
            | '\x91' -> push (PickleValue.Set(List(popMark ())))
            | '\x90' ->
                let items = popMark ()
                appendItems (top ()) items
            | 'a' ->
                let item = pop ()
                appendItems (top ()) [ item ]
            | 'e' ->
                let items = popMark ()
                appendItems (top ()) items
            | 's' ->
                let value = pop ()
                let key = pop ()
                setItems (top ()) [| key; value |]
            | 'u' ->
                let items = popMark ()
                setItems (top ()) items
            | 'c' ->
                let modul = line ()
                let name = line ()
                push (PickleValue.Global(modul, name))
            | '\x93' ->
                let name = pop ()
                let modul = pop ()
                match modul, name with
                | PickleValue.Str m, PickleValue.Str n -> push (PickleValue.Global(m, n))
                | _ -> fail "STACK_GLOBAL needs two strings"
            | 'R'
            | '\x81' ->
                let args = pop ()
                let callable = pop ()
                match args with
                | PickleValue.Tuple a -> push (PickleValue.Call { Callable = callable; Args = a; State = Option.None })
                | _ -> fail "REDUCE/NEWOBJ arguments are not a tuple"
            | '\x92' ->
                pop () |> ignore // keyword arguments: not needed by the shapes Bake reads
                let args = pop ()
                let callable = pop ()
                match args with
                | PickleValue.Tuple a -> push (PickleValue.Call { Callable = callable; Args = a; State = Option.None })
                | _ -> fail "NEWOBJ_EX arguments are not a tuple"
            | 'b' ->
                let state = pop ()
                match top () with
                | PickleValue.Call call -> call.State <- Some state
                | _ -> fail "BUILD on a value that is not an object"
            | 'q' -> memo[int64 (u8 ())] <- top ()
            | 'r' -> memo[int64 (i32 ())] <- top ()
            | 'p' -> memo[Int64.Parse(line ())] <- top ()
            | '\x94' -> memo[int64 memo.Count] <- top ()
            | 'h'
            | 'j'
            | 'g' ->
                let key = if op = int 'h' then int64 (u8 ()) elif op = int 'j' then int64 (i32 ()) else Int64.Parse(line ())
                match memo.TryGetValue key with
                | true, v -> push v
                | _ -> fail $"memo entry {key} was never stored"
            | _ -> fail $"unsupported opcode 0x{op:x2} (this reader supports the data pickles of numpy arrays, lists and dicts)"
        result.Value

    /// <summary>The text of a str or byte-string value (Python 2 keys are byte strings).</summary>
    [<CompiledName("Text")>]
    let text (value: PickleValue) : string option =
        match value with
        | PickleValue.Str s -> Some s
        | PickleValue.Bytes b -> Some(Encoding.Latin1.GetString b)
        | _ -> Option.None

    /// <summary>Looks a key up in a dict whose keys are str or byte strings.</summary>
    [<CompiledName("TryItem")>]
    let tryItem (key: string) (value: PickleValue) : PickleValue option =
        match value with
        | PickleValue.Dict items -> items |> Seq.tryFind (fun (k, _) -> text k = Some key) |> Option.map snd
        | _ -> Option.None

    let private isGlobal (names: (string * string) list) (value: PickleValue) =
        match value with
        | PickleValue.Global(m, n) -> names |> List.contains (m, n)
        | _ -> false

    /// <summary>Bytes, also when Python 3 pickled them as <c>_codecs.encode(text, 'latin1')</c> (protocol 2).</summary>
    [<CompiledName("AsBytes")>]
    let asBytes (value: PickleValue) : byte[] option =
        match value with
        | PickleValue.Bytes b -> Some b
        | PickleValue.Call { Callable = c; Args = [| PickleValue.Str s; _ |] } when isGlobal [ "_codecs", "encode" ] c ->
            Some(Encoding.Latin1.GetBytes s)
        | PickleValue.Call { Callable = c; Args = [||] } when isGlobal [ "__builtin__", "bytes"; "builtins", "bytes" ] c -> Some [||]
        | _ -> Option.None

    /// <summary>The element type code of a numpy dtype object, e.g. "u1".</summary>
    let private dtypeCode (value: PickleValue) =
        match value with
        | PickleValue.Call { Callable = c; Args = args } when isGlobal [ "numpy", "dtype" ] c && args.Length > 0 -> text args[0]
        | _ -> Option.None

    let private shapeOf (value: PickleValue) =
        match value with
        | PickleValue.Tuple dims ->
            let sizes = dims |> Array.choose (function PickleValue.Int v -> Some(int v) | _ -> Option.None)
            if sizes.Length = dims.Length then Some sizes else Option.None
        | _ -> Option.None

    /// <summary>A numpy array, as written by <c>ndarray.__reduce__</c> (<c>_reconstruct</c> + BUILD state, any numpy
    /// version) or by protocol 5's <c>_frombuffer</c> with in-band data: its shape, dtype code and raw bytes.</summary>
    [<CompiledName("AsNdarray")>]
    let asNdarray (value: PickleValue) : (int[] * string * bool * byte[]) option =
        match value with
        | PickleValue.Call { Callable = c; State = Some(PickleValue.Tuple state) } when
            isGlobal [ "numpy.core.multiarray", "_reconstruct"; "numpy._core.multiarray", "_reconstruct" ] c && state.Length = 5
            ->
            match shapeOf state[1], dtypeCode state[2], state[3], asBytes state[4] with
            | Some shape, Some dtype, PickleValue.Bool fortran, Some data -> Some(shape, dtype, fortran, data)
            | Some shape, Some dtype, PickleValue.Int fortran, Some data -> Some(shape, dtype, fortran <> 0L, data)
            | _ -> Option.None
        | PickleValue.Call { Callable = c; Args = [| buffer; dtype; shape; order |] } when
            isGlobal [ "numpy.core.numeric", "_frombuffer"; "numpy._core.numeric", "_frombuffer" ] c
            ->
            match asBytes buffer, dtypeCode dtype, shapeOf shape, text order with
            | Some data, Some code, Some dims, Some o -> Some(dims, code, (o = "F"), data)
            | _ -> Option.None
        | _ -> Option.None

    /// <summary>A list (or tuple, or 1-d integer numpy array) of integers that fit in 32 bits (None otherwise: a value
    /// such as 2³² + 3 is not silently wrapped to 3).</summary>
    [<CompiledName("AsInts")>]
    let asInts (value: PickleValue) : int[] option =
        let fits (v: int64) = v >= int64 Int32.MinValue && v <= int64 Int32.MaxValue
        let ofItems (items: PickleValue seq) =
            let values = items |> Seq.map (function PickleValue.Int v when fits v -> Some(int v) | _ -> Option.None) |> Seq.toArray
            if values |> Array.forall Option.isSome then Some(values |> Array.map Option.get) else Option.None
        match value with
        | PickleValue.List items -> ofItems items
        | PickleValue.Tuple items -> ofItems items
        | _ ->
            match asNdarray value with
            | Some([| n |], ("u1" | "i1"), _, data) when data.Length = n -> Some(data |> Array.map int)
            | Some([| n |], "i8", _, data) when data.Length = 8 * n ->
                let values = Array.init n (fun i -> BitConverter.ToInt64(data, 8 * i))
                if values |> Array.forall fits then Some(values |> Array.map int) else Option.None
            | Some([| n |], "i4", _, data) when data.Length = 4 * n -> Some(Array.init n (fun i -> BitConverter.ToInt32(data, 4 * i)))
            | _ -> Option.None

    /// <summary>A list of str or byte-string values.</summary>
    [<CompiledName("AsTexts")>]
    let asTexts (value: PickleValue) : string[] option =
        match value with
        | PickleValue.List items ->
            let texts = items |> Seq.map text |> Seq.toArray
            if texts |> Array.forall Option.isSome then Some(texts |> Array.map Option.get) else Option.None
        | _ -> Option.None
