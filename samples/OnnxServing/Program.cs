using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxServing;

System.Globalization.CultureInfo.CurrentCulture = System.Globalization.CultureInfo.InvariantCulture;

// Serves a model exported by `bake export --format onnx` with ONNX Runtime alone, and prints what `bake predict`
// prints for the same files: per image, its top-k classes and their softmax probabilities.
//   dotnet run --project samples/OnnxServing -- model.onnx [--top K] image.png...
if (args.Length < 2)
{
    Console.Error.WriteLine("usage: onnx-serving MODEL.onnx [--top K] IMAGE.png...");
    return 2;
}
var modelPath = args[0];
int top = 5;
var images = new List<string>();
for (int i = 1; i < args.Length; i++)
{
    if (args[i] == "--top" && i + 1 < args.Length && int.TryParse(args[i + 1], out top) && top >= 1) i++;
    else if (args[i] == "--top") { Console.Error.WriteLine("--top: expected a number of classes, at least 1"); return 2; }
    else images.Add(args[i]);
}
if (!File.Exists(modelPath)) { Console.Error.WriteLine($"{modelPath}: model file not found"); return 1; }

try
{
    using var options = new SessionOptions { IntraOpNumThreads = 2 };
    using var session = new InferenceSession(modelPath, options);

    // Everything needed to feed the model and read its output is in the model's metadata.
    var metadata = session.ModelMetadata.CustomMetadataMap;
    string Meta(string key) => metadata.TryGetValue(key, out var value)
        ? value : throw new InvalidDataException($"{modelPath}: no {key} metadata (not exported by bake export --format onnx)");
    var classes = JsonSerializer.Deserialize<string[]>(Meta("bake.classes"))!;
    var inputShape = JsonSerializer.Deserialize<int[]>(Meta("bake.input_shape"))!;
    var preprocessing = new Preprocessing(inputShape, JsonSerializer.Deserialize<double[]>(Meta("bake.mean"))!, JsonSerializer.Deserialize<double[]>(Meta("bake.std"))!);

    // One batch of all images (the batch dimension is dynamic).
    int imageSize = inputShape[0] * inputShape[1] * inputShape[2];
    var batch = new float[images.Count * imageSize];
    for (int i = 0; i < images.Count; i++)
    {
        if (!File.Exists(images[i])) throw new FileNotFoundException($"{images[i]}: image file not found");
        var (rgb, height, width) = Png.Decode(images[i]);
        preprocessing.Prepare(rgb, height, width).CopyTo(batch, i * imageSize);
    }
    var input = new DenseTensor<float>(batch, new[] { images.Count, inputShape[0], inputShape[1], inputShape[2] });
    using var results = session.Run(new[] { NamedOnnxValue.CreateFromTensor("images", input) });
    var logits = results.First(r => r.Name == "logits").AsTensor<float>();

    int nameWidth = Math.Max(5, classes.Max(c => c.Length));
    for (int i = 0; i < images.Count; i++)
    {
        // Softmax in float32 (max-subtracted), as Bake computes it.
        var row = Enumerable.Range(0, classes.Length).Select(k => logits[i, k]).ToArray();
        float max = row.Max();
        var exp = row.Select(v => MathF.Exp(v - max)).ToArray();
        float sum = exp.Sum();
        var ranked = exp.Select((e, k) => (Probability: (double)(e / sum), Label: k))
            .OrderByDescending(p => p.Probability).ThenBy(p => p.Label).Take(top).ToList();
        Console.WriteLine(images[i]);
        for (int rank = 0; rank < ranked.Count; rank++)
            Console.WriteLine($"  {rank + 1}. {classes[ranked[rank].Label].PadRight(nameWidth)}  {100 * ranked[rank].Probability,6:F2}%");
    }
    return 0;
}
catch (Exception e) when (e is InvalidDataException or FileNotFoundException or OnnxRuntimeException or JsonException)
{
    Console.Error.WriteLine($"onnx-serving: {e.Message}");
    return 1;
}
