namespace Bake.Core.Export

open System
open System.Runtime.InteropServices
open Google.Protobuf
open Onnx
open TorchSharp

/// <summary>An ONNX graph under construction: nodes in topological order, the weights as initializers, and fresh
/// value names. The protobuf messages are OnnxSharp's generated ONNX schema classes (<c>Onnx.NodeProto</c>, …) over
/// Google.Protobuf; nothing here writes wire format by hand.</summary>
/// <remarks>Not thread-safe; one builder per export.</remarks>
[<Sealed>]
type internal OnnxGraphBuilder() =
    let nodes = ResizeArray<NodeProto>()
    let initializers = ResizeArray<TensorProto>()
    let used = Collections.Generic.HashSet<string>()
    let mutable counter = 0

    /// <summary>A value name not used yet, derived from <paramref name="hint"/> (a module path like <c>layer1.0.conv1</c>).</summary>
    member _.Fresh(hint: string) : string =
        let baseName = if String.IsNullOrEmpty hint then "v" else hint
        let mutable name = baseName
        while not (used.Add name) do
            counter <- counter + 1
            name <- $"{baseName}_{counter}"
        name

    /// <summary>Adds a float32 initializer holding a copy of <paramref name="tensor"/> (any dtype, converted; not
    /// modified); returns its name.</summary>
    member this.Weight(name: string, tensor: torch.Tensor) : string =
        use _ = torch.NewDisposeScope()
        let values = tensor.detach().cpu().to_type(torch.float32).contiguous().data<float32>().ToArray()
        let proto = TensorProto(Name = this.Fresh name, DataType = int TensorProto.Types.DataType.Float)
        proto.Dims.AddRange(tensor.shape)
        // ONNX raw_data is little-endian, as the float32 bytes of every platform .NET runs on here.
        if not BitConverter.IsLittleEndian then raise (PlatformNotSupportedException "ONNX export needs a little-endian machine")
        proto.RawData <- ByteString.CopyFrom(MemoryMarshal.AsBytes(ReadOnlySpan<float32>(values)))
        initializers.Add proto
        proto.Name

    /// <summary>Adds a float32 scalar constant (rank 0) as an initializer; returns its name.</summary>
    member this.Scalar(name: string, value: float32) : string =
        let proto = TensorProto(Name = this.Fresh name, DataType = int TensorProto.Types.DataType.Float)
        proto.FloatData.Add value
        initializers.Add proto
        proto.Name

    /// <summary>Appends a node with one output and returns the output's name.</summary>
    /// <param name="opType">The ONNX operator (default domain, opset 17).</param>
    /// <param name="name">The node name and the hint of its output's name (a module path).</param>
    /// <param name="inputs">Input value names, in the operator's order.</param>
    /// <param name="attributes">The operator's attributes (see the helpers <c>ints</c>, <c>int</c>, <c>float</c>).</param>
    member this.Node(opType: string, name: string, inputs: string list, attributes: AttributeProto list) : string =
        let output = this.Fresh name
        let node = NodeProto(OpType = opType, Name = output)
        node.Input.AddRange inputs
        node.Output.Add output
        node.Attribute.AddRange attributes
        nodes.Add node
        output

    /// <summary>The nodes added so far, in order.</summary>
    member _.Nodes: NodeProto seq = nodes

    /// <summary>The initializers added so far, in order.</summary>
    member _.Initializers: TensorProto seq = initializers

/// <summary>Attribute and value-info helpers over the ONNX schema classes.</summary>
module internal OnnxProto =

    /// <summary>An INTS attribute.</summary>
    let ints (name: string) (values: int64 seq) : AttributeProto =
        let attribute = AttributeProto(Name = name, Type = AttributeProto.Types.AttributeType.Ints)
        attribute.Ints.AddRange values
        attribute

    /// <summary>An INT attribute.</summary>
    let int (name: string) (value: int64) : AttributeProto =
        AttributeProto(Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value)

    /// <summary>A FLOAT attribute.</summary>
    let float (name: string) (value: float32) : AttributeProto =
        AttributeProto(Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value)

    /// <summary>A float32 tensor value: a symbolic first dimension named <paramref name="batch"/> (the batch), the
    /// others fixed.</summary>
    let floatTensor (name: string) (batch: string) (dims: int64 seq) (doc: string) : ValueInfoProto =
        let shape = TensorShapeProto()
        shape.Dim.Add(TensorShapeProto.Types.Dimension(DimParam = batch))
        for d in dims do
            shape.Dim.Add(TensorShapeProto.Types.Dimension(DimValue = d))
        let tensor = TypeProto.Types.Tensor(ElemType = Operators.int TensorProto.Types.DataType.Float, Shape = shape)
        ValueInfoProto(Name = name, Type = TypeProto(TensorType = tensor), DocString = doc)

    /// <summary>A metadata entry (key, value).</summary>
    let entry (key: string) (value: string) : StringStringEntryProto = StringStringEntryProto(Key = key, Value = value)
