using System;
using Microsoft.FSharp.Core;

namespace Bake;

/// <summary>How BAKE propagates predictions through the batch (paper §3.2).</summary>
public enum PropagationForm
{
    /// <summary>Infinite propagation in closed form, Eq. (9). The default.</summary>
    ClosedForm,
    /// <summary>One propagation step, Eq. (6).</summary>
    OneStep,
    /// <summary>A fixed number of steps of Eq. (7); see <see cref="BakeOptions.Steps"/>.</summary>
    Steps,
}

/// <summary>BAKE hyper-parameters with the paper's defaults (τ = 4, ω = 0.5, λ = 1).</summary>
public sealed record BakeOptions
{
    /// <summary>τ, the softmax temperature for the predictions and the distillation term. Must be &gt; 0.</summary>
    public double Temperature { get; init; } = Core.BakeOptions.Default.Temperature;

    /// <summary>ω, the ensembling weight, in [0, 1).</summary>
    public double Omega { get; init; } = Core.BakeOptions.Default.Omega;

    /// <summary>λ, the weight of the distillation term. Must be ≥ 0.</summary>
    public double Lambda { get; init; } = Core.BakeOptions.Default.Lambda;

    /// <summary>The propagation form; closed form by default.</summary>
    public PropagationForm Propagation { get; init; } = PropagationForm.ClosedForm;

    /// <summary>The number of propagation steps when <see cref="Propagation"/> is <see cref="PropagationForm.Steps"/>
    /// (the core's default, METHOD.STEPS = 3).</summary>
    public int Steps { get; init; } = Core.BakeOptions.DefaultSteps;

    /// <summary>Validates the options and converts them to the core's record.</summary>
    /// <exception cref="ArgumentException">Lists every invalid field.</exception>
    internal Core.BakeOptions ToCore()
    {
        var form = Propagation switch
        {
            PropagationForm.ClosedForm => Core.PropagationForm.ClosedForm,
            PropagationForm.OneStep => Core.PropagationForm.OneStep,
            PropagationForm.Steps => Core.PropagationForm.NewSteps(Steps),
            _ => throw new ArgumentException($"Propagation = {Propagation} is not a known form (expected ClosedForm, OneStep or Steps)", nameof(Propagation)),
        };
        var options = new Core.BakeOptions(Temperature, Omega, Lambda, form);
        return Core.Validate.OrThrow("BAKE options", Core.Validate.Bake(options));
    }
}
