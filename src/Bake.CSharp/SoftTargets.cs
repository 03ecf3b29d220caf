using System;
using TorchSharp;

namespace Bake;

/// <summary>BAKE soft targets for a batch of features and logits (paper Eq. 3–9).</summary>
public static class SoftTargets
{
    /// <summary>Computes Q = (1 − ω)(I − ωÂ)⁻¹ softmax(logits / τ) (or the propagation form of the options).</summary>
    /// <param name="features">Encoded representations, N×D; used detached.</param>
    /// <param name="logits">Logits, N×K; used detached.</param>
    /// <param name="options">Hyper-parameters; <c>null</c> means the paper's defaults.</param>
    /// <returns>A new N×K tensor (the caller owns it) whose rows sum to 1, with no autograd history.</returns>
    /// <exception cref="ArgumentNullException">A tensor is null.</exception>
    /// <exception cref="ArgumentException">Shapes do not match or the options are invalid (all problems listed).</exception>
    public static torch.Tensor Compute(torch.Tensor features, torch.Tensor logits, BakeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(logits);
        return Core.Propagation.SoftTargets(features, logits, (options ?? new BakeOptions()).ToCore());
    }
}

/// <summary>The BAKE loss and its named terms. Disposing it frees the three tensors (after <c>backward()</c>).</summary>
public sealed class BakeLossResult : IDisposable
{
    internal BakeLossResult(torch.Tensor total, torch.Tensor crossEntropy, torch.Tensor distillation)
    {
        Total = total;
        CrossEntropy = crossEntropy;
        Distillation = distillation;
    }

    /// <summary>CE + λ·KD, a scalar tensor to call <c>backward()</c> on.</summary>
    public torch.Tensor Total { get; }

    /// <summary>The cross-entropy term, averaged over the batch.</summary>
    public torch.Tensor CrossEntropy { get; }

    /// <summary>The unweighted distillation term τ²·KL(Q ‖ softmax(z/τ)), averaged over the batch.</summary>
    public torch.Tensor Distillation { get; }

    /// <summary>Frees <see cref="Total"/>, <see cref="CrossEntropy"/> and <see cref="Distillation"/>.</summary>
    public void Dispose()
    {
        Total.Dispose();
        CrossEntropy.Dispose();
        Distillation.Dispose();
    }
}

/// <summary>The BAKE training loss, paper Eq. (2) with the soft targets of Eq. (9).</summary>
public static class BakeLoss
{
    /// <summary>Computes CE(logits, labels) + λ·τ²·KL(Q ‖ softmax(logits/τ)) for one batch.</summary>
    /// <param name="features">Encoded representations, N×D (used detached for the targets).</param>
    /// <param name="logits">Logits, N×K; gradients flow.</param>
    /// <param name="labels">Class indices, an int64 vector of length N.</param>
    /// <param name="options">Hyper-parameters; <c>null</c> means the paper's defaults.</param>
    /// <exception cref="ArgumentNullException">A tensor is null.</exception>
    /// <exception cref="ArgumentException">Shapes or labels are invalid, or the options are (all problems listed).</exception>
    public static BakeLossResult Compute(torch.Tensor features, torch.Tensor logits, torch.Tensor labels, BakeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(labels);
        var loss = Core.Losses.Bake(features, logits, labels, (options ?? new BakeOptions()).ToCore());
        return new BakeLossResult(loss.Total, loss.Terms[0].Value, loss.Terms[1].Value);
    }
}
