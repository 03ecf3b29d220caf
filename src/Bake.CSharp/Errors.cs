using System;
using Core = Bake.Core;

namespace Bake;

/// <summary>How every entry point of the façade reports the core's errors, the same way everywhere: a usage error
/// (an invalid option, key or value; <c>Bake.Core.UsageException</c>) becomes an <see cref="ArgumentException"/>
/// whose parameter is the one at fault; a failure the caller can act on (a missing or corrupt file, an unwritable
/// directory, a diverging run) stays a <c>Bake.Core.BakeException</c> whose message names the file, key or value.</summary>
internal static class Errors
{
    /// <summary>Runs a core call, translating its usage errors; <paramref name="parameter"/> names the argument
    /// reported when the core names none.</summary>
    internal static T Translate<T>(Func<T> call, string parameter)
    {
        try
        {
            return call();
        }
        catch (Core.UsageException e)
        {
            throw new ArgumentException(e.Message, e.Parameter ?? parameter, e);
        }
    }

    /// <summary>The translation of one exception (for errors raised on another thread).</summary>
    internal static Exception Translate(Exception e, string parameter) =>
        e is Core.UsageException usage ? new ArgumentException(usage.Message, usage.Parameter ?? parameter, usage) : e;
}
