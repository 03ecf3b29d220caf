namespace OnnxServing;

/// <summary>What <c>bake predict</c> does to an image before the model sees it, from the model's metadata alone:
/// pixels to [0, 1]; RGB to gray by ITU-R 601 luma (gray to RGB by repetition); an image of another size resized
/// (shorter side, bilinear with antialiasing) and center-cropped to the model's input size; then
/// (x − mean) / std per channel. Float32 throughout, as Bake computes it.</summary>
public sealed class Preprocessing
{
    private readonly int _channels, _height, _width;
    private readonly float[] _mean, _std;

    /// <param name="inputShape">C, H, W of the model's input (metadata <c>bake.input_shape</c>).</param>
    /// <param name="mean">Per-channel mean (metadata <c>bake.mean</c>).</param>
    /// <param name="std">Per-channel std (metadata <c>bake.std</c>).</param>
    public Preprocessing(int[] inputShape, double[] mean, double[] std)
    {
        (_channels, _height, _width) = (inputShape[0], inputShape[1], inputShape[2]);
        _mean = mean.Select(v => (float)v).ToArray();
        _std = std.Select(v => (float)v).ToArray();
    }

    /// <summary>C × H × W floats, ready for the model's <c>images</c> input.</summary>
    public float[] Prepare(byte[] rgb, int height, int width)
    {
        int plane = height * width;
        var image = new float[_channels * plane];
        if (_channels == 1)
        {
            for (int p = 0; p < plane; p++)
                image[p] = rgb[p] / 255f * 0.299f + rgb[plane + p] / 255f * 0.587f + rgb[2 * plane + p] / 255f * 0.114f;
        }
        else if (_channels == 3)
        {
            for (int i = 0; i < image.Length; i++) image[i] = rgb[i] / 255f;
        }
        else throw new InvalidDataException($"a model with {_channels} input channels cannot take images");
        if (height != _height || width != _width)
        {
            // Bake's image decoding brings every image to the training size this way; larger models then take a 224 crop.
            image = ResizeCenterCrop(image, _channels, height, width, _height, _height);
            (height, width) = (_height, _height);
        }
        for (int c = 0; c < _channels; c++)
            for (int p = 0; p < height * width; p++)
                image[c * height * width + p] = (image[c * height * width + p] - _mean[c]) / _std[c];
        return image;
    }

    /// <summary>Resizes the shorter side to <paramref name="resize"/> (keeping the aspect ratio) and crops the center
    /// <paramref name="crop"/>×<paramref name="crop"/>.</summary>
    private static float[] ResizeCenterCrop(float[] image, int channels, int h, int w, int resize, int crop)
    {
        var (newH, newW) = h <= w ? (resize, (int)Math.Round((double)resize * w / h)) : ((int)Math.Round((double)resize * h / w), resize);
        var resized = Resize(image, channels, h, w, newH, newW);
        int cropH = Math.Min(crop, newH), cropW = Math.Min(crop, newW);
        int top = (int)Math.Round((newH - cropH) / 2.0), left = (int)Math.Round((newW - cropW) / 2.0);
        var output = new float[channels * cropH * cropW];
        for (int c = 0; c < channels; c++)
            for (int y = 0; y < cropH; y++)
                for (int x = 0; x < cropW; x++)
                    output[(c * cropH + y) * cropW + x] = resized[(c * newH + top + y) * newW + left + x];
        return output;
    }

    /// <summary>Antialiased bilinear resampling (the triangle filter widened by the scale when shrinking, as PIL and
    /// libtorch's <c>interpolate(..., antialias=True)</c> do), width first, then height.</summary>
    private static float[] Resize(float[] image, int channels, int h, int w, int newH, int newW)
    {
        var (wIndex, wWeights) = Weights(w, newW);
        var (hIndex, hWeights) = Weights(h, newH);
        var horizontal = new float[channels * h * newW];
        for (int c = 0; c < channels; c++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < newW; x++)
                {
                    float sum = 0;
                    for (int k = 0; k < wWeights[x].Length; k++) sum += image[(c * h + y) * w + wIndex[x] + k] * wWeights[x][k];
                    horizontal[(c * h + y) * newW + x] = sum;
                }
        var output = new float[channels * newH * newW];
        for (int c = 0; c < channels; c++)
            for (int y = 0; y < newH; y++)
                for (int x = 0; x < newW; x++)
                {
                    float sum = 0;
                    for (int k = 0; k < hWeights[y].Length; k++) sum += horizontal[(c * h + hIndex[y] + k) * newW + x] * hWeights[y][k];
                    output[(c * newH + y) * newW + x] = sum;
                }
        return output;
    }

    private static (int[] First, float[][] Weights) Weights(int input, int output)
    {
        double scale = (double)input / output;
        double support = scale >= 1.0 ? scale : 1.0;
        double inverse = scale >= 1.0 ? 1.0 / scale : 1.0;
        var first = new int[output];
        var weights = new float[output][];
        for (int i = 0; i < output; i++)
        {
            double center = scale * (i + 0.5);
            int min = Math.Max((int)(center - support + 0.5), 0);
            int size = Math.Min((int)(center + support + 0.5), input) - min;
            var w = new double[size];
            for (int j = 0; j < size; j++) w[j] = Math.Max(0.0, 1.0 - Math.Abs((j + min - center + 0.5) * inverse));
            double total = w.Sum();
            first[i] = min;
            weights[i] = w.Select(v => (float)(total > 0 ? v / total : 0)).ToArray();
        }
        return (first, weights);
    }
}
