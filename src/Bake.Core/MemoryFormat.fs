namespace Bake.Core

open TorchSharp

/// <summary>Channels-last (NHWC in memory) tensors, modules and optimizer state. TorchSharp 0.107 has no
/// <c>memory_format</c> argument, but libtorch chooses its NHWC (oneDNN) convolution, BatchNorm and pooling kernels
/// from the strides, so a tensor permuted to N×H×W×C, made contiguous and permuted back is channels-last for every op
/// (PyTorch's <c>x.to(memory_format=torch.channels_last)</c>), and the layout carries through the network. Values are
/// never changed, only where they sit in memory; docs/performance.md has the measurements.</summary>
[<RequireQualifiedAccess>]
module MemoryFormat =

    /// <summary>True for a 4-D tensor whose strides libtorch reads as channels-last, i.e. one it runs its NHWC
    /// kernels on and lays the results of out channels-last (c10's <c>is_channels_last_strides_2d</c>, which
    /// <c>suggest_memory_format</c> uses). Ambiguous cases count as the standard layout, as in libtorch: a contiguous
    /// single-channel tensor is not channels-last (its channels-last strides are N: H·W, C: 1, H: W, W: 1).</summary>
    [<CompiledName("IsChannelsLast")>]
    let isChannelsLast (tensor: torch.Tensor) : bool =
        if tensor.dim () <> 4L then false
        else
            let size, stride = tensor.shape, tensor.stride ()
            if stride[1] = 0L then false
            else
                let mutable least = 0L
                let mutable result = true
                for d in [ 1; 3; 2; 0 ] do
                    if result then
                        if size[d] = 0L || stride[d] < least || (d = 0 && least = stride[1]) then result <- false
                        else least <- stride[d] * (if size[d] > 1L then size[d] else 1L)
                result

    /// <summary>A fresh channels-last copy of a 4-D tensor with exactly the channels-last strides (PyTorch's
    /// <c>x.contiguous(memory_format=torch.channels_last)</c>; differentiable: gradients flow back in the input's own
    /// layout). A tensor already channels-last, or not 4-D, gets a fresh alias.</summary>
    [<CompiledName("ChannelsLast")>]
    let channelsLast (tensor: torch.Tensor) : torch.Tensor =
        if tensor.dim () <> 4L || isChannelsLast tensor then tensor.alias ()
        else
            let size = tensor.shape
            let n, c, h, w = size[0], size[1], size[2], size[3]
            // permute + contiguous alone would keep a single-channel tensor's standard strides (its memory is already
            // NHWC), which libtorch then reads as the standard layout: the copy gets the exact strides instead.
            use nhwc = torch.empty ([| n; h; w; c |], dtype = tensor.dtype, device = tensor.device)
            use permuted = tensor.permute (0L, 2L, 3L, 1L)
            nhwc.copy_ permuted |> ignore
            nhwc.as_strided ([| n; c; h; w |], [| h * w * c; 1L; w * c; c |], 0L)

    /// <summary>Re-lays the tensor out in place (its handle, autograd identity and values are kept; its storage is
    /// replaced): channels-last or the standard contiguous layout. Only 4-D tensors change.</summary>
    let private relayout (toChannelsLast: bool) (tensor: torch.Tensor) =
        if not (isNull tensor) && tensor.dim () = 4L && isChannelsLast tensor <> toChannelsLast then
            use _ = torch.no_grad ()
            use moved = if toChannelsLast then channelsLast tensor else tensor.contiguous ()
            tensor.set_ moved |> ignore

    /// <summary>Puts every 4-D parameter and buffer of a module (convolution weights) into channels-last
    /// (<paramref name="on"/>) or the standard layout, in place, as PyTorch's
    /// <c>model.to(memory_format=...)</c>. Call it before building the optimizer so its state follows.</summary>
    [<CompiledName("Apply")>]
    let apply (model: torch.nn.Module, on: bool) : unit =
        for parameter in model.parameters () do
            relayout on parameter
        for struct (_, buffer) in model.named_buffers () do
            relayout on buffer

    /// <summary>Puts the SGD momentum buffers into channels-last (<paramref name="on"/>) or the standard layout, in
    /// place. TorchSharp's optimizer files need the standard layout (it refuses to write strided tensors), and a
    /// state read back from a file comes in the standard layout.</summary>
    [<CompiledName("ApplyToOptimizer")>]
    let applyToOptimizer (optimizer: Modules.SGD, on: bool) : unit =
        for state in optimizer.state_dict().State do
            match state with
            | :? Modules.SGD.State as sgd -> relayout on sgd.momentum_buffer
            | _ -> ()
