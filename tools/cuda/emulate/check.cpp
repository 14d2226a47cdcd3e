// Runs the repository's NVRTC kernels on the host (shim.h) against element-wise references written from the ops they
// replace: vector paths against scalar paths and formulas, tails, misaligned pointers, strided rows, shared memory, warp
// reductions. Built and run by tools/cuda/emulate_check.py, which generates kernels.inc from the C# sources.
#include "shim.h"
#include <cstdio>
#include <random>
#include <string>

#include "kernels.inc"

using m_fused::bf2f;
using m_fused::f2bf;
typedef unsigned short bf16;

static int failures = 0;
static void expect(bool ok, const std::string& what)
{
    std::printf("%s  %s\n", ok ? "PASS" : "FAIL", what.c_str());
    failures += !ok;
}

static std::mt19937 rng(20261207);
static std::vector<bf16> random_bf16(size_t n, float scale = 1.0f)
{
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<bf16> v(n + 16);
    for (auto& x : v) x = f2bf(d(rng));
    return v;
}
static std::vector<float> random_f32(size_t n)
{
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> v(n + 16);
    for (auto& x : v) x = d(rng);
    return v;
}
static std::string sci(double x) { char b[32]; std::snprintf(b, sizeof b, "%.2e", x); return b; }
static unsigned blocks(long long lanes, unsigned threads) { return (unsigned)((lanes + threads - 1) / threads); }

// silu(g)·u as the libtorch ops round: silu in bf16, product in bf16.
static bf16 silu_mul_ref(bf16 g, bf16 u)
{
    float gv = bf2f(g);
    float silu = bf2f(f2bf(gv / (1.0f + std::exp(-gv))));
    return f2bf(silu * bf2f(u));
}

static void silu_mul(long long rows, int cols, long long gs, long long us, int misalign, const char* what)
{
    auto g = random_bf16(rows * gs + 8, 2.0f), u = random_bf16(rows * us + 8);
    std::vector<bf16> out(rows * cols + 16, 0xffff);
    const bf16* gp = g.data() + misalign;
    bf16* op = out.data() + misalign;
    long long n = rows * cols;
    launch(Launch::Sequential, blocks((n + 7) / 8, 256), 1, 256, [&] { m_fused::silu_mul_bf16(gp, u.data(), gs, us, op, rows, cols); });
    long long bad = 0;
    for (long long r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            bad += op[r * cols + c] != silu_mul_ref(gp[r * gs + c], u[r * us + c]);
    expect(bad == 0 && op[n] == 0xffff, std::string("silu_mul_bf16 ") + what + ": " + std::to_string(bad) + " differ");
}

static void silu_mul_bwd(long long n, int misalign)
{
    auto g = random_bf16(n, 2.0f), u = random_bf16(n), go = random_bf16(n);
    std::vector<bf16> gg(n + 16), gu(n + 16), gg2(n + 16), gu2(n + 16);
    launch(Launch::Sequential, blocks((n + 7) / 8, 256), 1, 256, [&] {
        m_fused::silu_mul_bwd_bf16(g.data() + misalign, u.data() + misalign, go.data() + misalign, gg.data() + misalign, gu.data() + misalign, n); });
    long long bad = 0;
    for (long long i = 0; i < n; i++)
    {
        bf16 a, b;
        m_fused::silu_mul_bwd_one(g[i + misalign], u[i + misalign], go[i + misalign], &a, &b);
        bad += gg[i + misalign] != a || gu[i + misalign] != b;
    }
    expect(bad == 0, "silu_mul_bwd_bf16 n " + std::to_string(n) + " misalign " + std::to_string(misalign) + ": " + std::to_string(bad) + " differ");
}

static void lora_combine(long long n, int round, int misalign)
{
    auto r = random_bf16(n);
    auto u = random_f32(n);
    std::vector<bf16> out(n + 16);
    float scale = 2.0f;
    launch(Launch::Sequential, blocks((n + 7) / 8, 256), 1, 256, [&] {
        m_lora_combine::lora_combine_fwd(r.data() + misalign, u.data() + misalign, scale, round, out.data() + misalign, n); });
    long long bad = 0;
    for (long long i = 0; i < n; i++)
    {
        float update = u[i + misalign] * scale;
        if (round) update = bf2f(f2bf(update));
        bad += out[i + misalign] != f2bf(bf2f(r[i + misalign]) + update);
    }
    std::vector<float> gu(n + 16);
    launch(Launch::Sequential, blocks((n + 7) / 8, 256), 1, 256, [&] {
        m_lora_combine::lora_combine_bwd(r.data() + misalign, scale, gu.data() + misalign, n); });
    for (long long i = 0; i < n; i++) bad += gu[i + misalign] != bf2f(r[i + misalign]) * scale;
    expect(bad == 0, "lora_combine fwd+bwd n " + std::to_string(n) + " round " + std::to_string(round) + " misalign " + std::to_string(misalign) + ": " + std::to_string(bad) + " differ");
}

static void lora_dropout(long long n, int misalign)
{
    auto x = random_bf16(n);
    auto gy = random_f32(n);
    long long seed = 0x1234567890abcLL;
    double p = 0.1;
    unsigned int threshold = (unsigned int)std::llround(p * 4294967296.0);
    float scale = (float)(1.0 / (1.0 - p));
    std::vector<float> y(n + 16);
    std::vector<bf16> gx(n + 16);
    launch(Launch::Sequential, blocks((n + 7) / 8, 256), 1, 256, [&] {
        m_lora_dropout::lora_dropout_fwd(x.data() + misalign, &seed, threshold, scale, y.data() + misalign, n); });
    launch(Launch::Sequential, blocks((n + 7) / 8, 256), 1, 256, [&] {
        m_lora_dropout::lora_dropout_bwd(gy.data() + misalign, &seed, threshold, scale, gx.data() + misalign, n); });
    long long bad = 0, dropped = 0;
    for (long long i = 0; i < n; i++)
    {
        bool keep = m_lora_dropout::keep((unsigned long long)seed, (unsigned long long)i, threshold);
        dropped += !keep;
        bad += y[i + misalign] != (keep ? bf2f(x[i + misalign]) * scale : 0.0f);
        bad += gx[i + misalign] != f2bf(keep ? gy[i + misalign] * scale : 0.0f);
    }
    double rate = (double)dropped / n, sigma = std::sqrt(p * (1 - p) / n);
    expect(bad == 0 && std::fabs(rate - p) < 5 * sigma, "lora_dropout fwd+bwd n " + std::to_string(n) + " misalign " + std::to_string(misalign)
        + ": " + std::to_string(bad) + " differ, dropped " + std::to_string(rate));
}

// LoRA's first product with the dropout inside (lora_xa + lora_split_sum, lora_grad_x, lora_grad_a) against two
// references: the same float32 fmaf sums in the kernels' order (split by split, k or t ascending, splits added in
// order), which must match bit for bit, and double-precision sums over y = lora_dropout_fwd's own output, which must
// agree to float32 rounding (gx: within one bf16 ulp, zero exactly where dropped).
static void lora_projection(long long rows, int K, int r, double p, int k_split, long long t_split, float scale_override = 0.0f)
{
    auto x = random_bf16((size_t)rows * K);
    auto a = random_f32((size_t)r * K);
    auto g = random_f32((size_t)rows * r);
    long long seed = 0x5eed1234abcdLL;
    unsigned int threshold = (unsigned int)std::llround(p * 4294967296.0);
    float scale = scale_override != 0.0f ? scale_override : (float)(1.0 / (1.0 - p)); // p 0 with a scale: LoRA-B's backward
    long long n = rows * K;
    std::vector<float> y(n + 16);
    launch(Launch::Sequential, blocks((n + 7) / 8, 256), 1, 256, [&] {
        m_lora_dropout::lora_dropout_fwd(x.data(), &seed, threshold, scale, y.data(), n); });
    const int rq = (r + 3) / 4;
    const int ksplits = (K + k_split - 1) / k_split;
    const int tsplits = (int)((rows + t_split - 1) / t_split);
    std::vector<float> hp((size_t)ksplits * rows * r, -1.0f), h((size_t)rows * r);
    launch(Launch::Threads, blocks(rows, 128), ksplits, 32 * rq, [&] {
        m_lora_dropout::lora_xa(x.data(), &seed, threshold, scale, a.data(), hp.data(), rows, K, r, k_split); });
    launch(Launch::Sequential, blocks(rows * r, 256), 1, 256, [&] {
        m_lora_dropout::lora_split_sum(hp.data(), ksplits, rows * r, h.data()); });
    std::vector<bf16> gx(n + 16, 0xFFFF);
    launch(Launch::Sequential, blocks(K, 512), blocks(rows, 16), 256, [&] {
        m_lora_dropout::lora_grad_x(g.data(), a.data(), &seed, threshold, scale, gx.data(), rows, K, r); });
    std::vector<float> ap((size_t)tsplits * r * K, -1.0f), ga((size_t)r * K);
    launch(Launch::Threads, blocks(K, 256), tsplits, 32 * rq, [&] {
        m_lora_dropout::lora_grad_a(g.data(), x.data(), &seed, threshold, scale, ap.data(), rows, K, r, t_split); });
    launch(Launch::Sequential, blocks((long long)r * K, 256), 1, 256, [&] {
        m_lora_dropout::lora_split_sum(ap.data(), tsplits, (long long)r * K, ga.data()); });

    long long hbad = 0, abad = 0, xbad = 0, xfar = 0, dropped = 0;
    double hworst = 0, aworst = 0;
    for (long long t = 0; t < rows; t++)
        for (int j = 0; j < r; j++)
        {
            float total = 0.0f;
            double exact = 0, mag = 0;
            for (int s = 0; s < ksplits; s++)
            {
                float acc = 0.0f;
                for (int k = s * k_split; k < std::min(K, (s + 1) * k_split); k++) acc = std::fmaf(y[t * K + k], a[(size_t)j * K + k], acc);
                total = s == 0 ? acc : total + acc;
            }
            for (int k = 0; k < K; k++) { double v = (double)y[t * K + k] * a[(size_t)j * K + k]; exact += v; mag += std::fabs(v); }
            hbad += h[t * r + j] != total;
            hworst = std::max(hworst, std::fabs(h[t * r + j] - exact) / std::max(mag, 1e-30));
        }
    for (int j = 0; j < r; j++)
        for (int k = 0; k < K; k++)
        {
            float total = 0.0f;
            double exact = 0, mag = 0;
            for (int s = 0; s < tsplits; s++)
            {
                float acc = 0.0f;
                for (long long t = s * t_split; t < std::min(rows, (s + 1) * t_split); t++) acc = std::fmaf(g[t * r + j], y[t * K + k], acc);
                total = s == 0 ? acc : total + acc;
            }
            for (long long t = 0; t < rows; t++) { double v = (double)g[t * r + j] * y[t * K + k]; exact += v; mag += std::fabs(v); }
            abad += ga[(size_t)j * K + k] != total;
            aworst = std::max(aworst, std::fabs(ga[(size_t)j * K + k] - exact) / std::max(mag, 1e-30));
        }
    for (long long t = 0; t < rows; t++)
        for (int k = 0; k < K; k++)
        {
            long long i = t * K + k;
            bool keep = threshold == 0 || m_lora_dropout::keep((unsigned long long)seed, (unsigned long long)i, threshold);
            dropped += !keep;
            float acc = 0.0f;
            double exact = 0, mag = 0;
            for (int j = 0; j < r; j++)
            {
                acc = std::fmaf(g[t * r + j], a[(size_t)j * K + k], acc);
                exact += (double)g[t * r + j] * a[(size_t)j * K + k];
                mag += std::fabs((double)g[t * r + j] * a[(size_t)j * K + k]);
            }
            bf16 want = f2bf(keep ? acc * scale : 0.0f);
            xbad += gx[i] != want;
            // bf16 rounding (2^-9 relative, 2^-8 allowed) plus float32 summation error on the products' magnitude
            xfar += keep ? std::fabs(bf2f(gx[i]) - exact * scale) > std::ldexp(std::fabs(exact * scale), -8) + 1e-6 * mag * scale : gx[i] != 0;
        }
    xbad += gx[n] != 0xFFFF; // nothing written past the end
    double rate = (double)dropped / n, sigma = std::sqrt(std::max(p * (1 - p), 1e-12) / n);
    bool ok = hbad == 0 && abad == 0 && xbad == 0 && xfar == 0 && hworst < 1e-5 && aworst < 1e-5 && std::fabs(rate - p) < 6 * sigma;
    expect(ok, "lora_xa/grad_x/grad_a rows " + std::to_string(rows) + " K " + std::to_string(K) + " r " + std::to_string(r) + " p "
        + sci(p) + " scale " + sci(scale) + " k_split " + std::to_string(k_split) + " t_split " + std::to_string(t_split) + ": differ from the float32 order h "
        + std::to_string(hbad) + ", gA " + std::to_string(abad) + ", gx " + std::to_string(xbad) + "; from double: h " + sci(hworst)
        + ", gA " + sci(aworst) + ", gx beyond bf16 rounding " + std::to_string(xfar) + "; dropped " + std::to_string(rate));
}

// LoRA's second product inside the combine (lora_b_combine) against lora_combine_fwd over the float32 update made with
// the kernel's own order (fmaf over j ascending): bit for bit, rows and columns with tails, both update roundings.
static void lora_b_combine(long long rows, int N, int r, int round)
{
    auto h = random_f32((size_t)rows * r);
    auto bt = random_f32((size_t)r * N);
    auto result = random_bf16((size_t)rows * N);
    float scale = 0.5f;
    std::vector<float> u((size_t)rows * N + 16);
    for (long long t = 0; t < rows; t++)
        for (int o = 0; o < N; o++)
        {
            float acc = 0.0f;
            for (int j = 0; j < r; j++) acc = std::fmaf(h[t * r + j], bt[(size_t)j * N + o], acc);
            u[t * N + o] = acc;
        }
    long long n = rows * N;
    std::vector<bf16> want(n + 16), got(n + 16, 0xFFFF);
    launch(Launch::Sequential, blocks((n + 7) / 8, 256), 1, 256, [&] {
        m_lora_combine::lora_combine_fwd(result.data(), u.data(), scale, round, want.data(), n); });
    launch(Launch::Sequential, blocks(N, 512), blocks(rows, 16), 256, [&] {
        m_lora_combine::lora_b_combine(h.data(), bt.data(), result.data(), scale, round, got.data(), rows, N, r); });
    long long bad = 0;
    for (long long i = 0; i < n; i++) bad += got[i] != want[i];
    bad += got[n] != 0xFFFF;
    expect(bad == 0, "lora_b_combine rows " + std::to_string(rows) + " N " + std::to_string(N) + " r " + std::to_string(r) + " round "
        + std::to_string(round) + ": " + std::to_string(bad) + " differ from lora_combine_fwd over the float32 update");
}

// The NF4 dequantize kernels against the element-wise formula of the kernels they replaced.
static void nf4(long long n, int block, bool dq, bool bf16_out, int misalign_out)
{
    std::vector<float> pairs(512);
    float nf4v[16] = {-1.0f, -0.6961928f, -0.5250731f, -0.3949175f, -0.2844414f, -0.1848449f, -0.0910500f, 0.0f,
                      0.0795803f, 0.1609302f, 0.2461123f, 0.3379152f, 0.4407098f, 0.5626170f, 0.7229568f, 1.0f};
    for (int b = 0; b < 256; b++) { pairs[2 * b] = nf4v[b >> 4]; pairs[2 * b + 1] = nf4v[b & 15]; }
    long long bytes = (n + 1) / 2, nb = (n + block - 1) / block;
    std::vector<unsigned char> packed(bytes + 16), codes(nb);
    for (auto& b : packed) b = (unsigned char)(rng() & 0xff);
    for (auto& c : codes) c = (unsigned char)(rng() & 0xff);
    std::vector<float> scales = random_f32(nb), nested = random_f32(nb / 4 + 1), map(256);
    for (int i = 0; i < 256; i++) map[i] = (i - 128) / 127.0f;
    float offset = 0.03125f;
    std::vector<unsigned char> out((n + 16) * 4, 0xee);
    void* op = out.data() + misalign_out * (bf16_out ? 2 : 4);
    if (dq)
        launch(Launch::Threads, blocks((n + 15) / 16, 256), 1, 256, [&] {
            m_nf4::nf4_dequantize_dq(packed.data(), codes.data(), nested.data(), map.data(), offset, pairs.data(), op, n, block, 4, bf16_out); });
    else
        launch(Launch::Threads, blocks((n + 15) / 16, 256), 1, 256, [&] {
            m_nf4::nf4_dequantize(packed.data(), scales.data(), pairs.data(), op, n, block, bf16_out); });
    long long bad = 0;
    for (long long e = 0; e < n; e++)
    {
        long long blk = e / block;
        float s = dq ? (map[codes[blk]] * nested[blk / 4]) + offset : scales[blk];
        unsigned char b = packed[e / 2];
        float v = pairs[2 * b + (e & 1)] * s;
        bad += bf16_out ? ((bf16*)op)[e] != f2bf(v) : ((float*)op)[e] != v;
    }
    bool tail_clean = bf16_out ? ((bf16*)op)[n] == 0xeeee : out[(misalign_out + n) * 4] == 0xee;
    expect(bad == 0 && tail_clean, std::string("nf4_dequantize") + (dq ? "_dq" : "") + " n " + std::to_string(n) + " block " + std::to_string(block)
        + (bf16_out ? " bf16" : " f32") + " misalign " + std::to_string(misalign_out) + ": " + std::to_string(bad) + " differ");
}

// RoPE + head layout, plain and straight into a KV cache at a slot.
static void rope_into_cache()
{
    const int B = 2, T = 1, H = 4, KV = 2, D = 8, cap = 5;
    auto qs = random_bf16(B * T * H * D), ks = random_bf16(B * T * KV * D), vs = random_bf16(B * T * KV * D);
    auto cs = random_bf16(B * T * D), sn = random_bf16(B * T * D);
    std::vector<bf16> q(B * H * T * D), k(B * KV * T * D), v(B * KV * T * D), q2(q.size());
    std::vector<bf16> ck(B * KV * cap * D, 0), cv(B * KV * cap * D, 0);
    long long slot = 3;
    launch(Launch::Sequential, B * T, H + 2 * KV, D / 2, [&] {
        m_fused::rope_split_bf16(qs.data(), ks.data(), vs.data(), H * D, KV * D, KV * D, cs.data(), sn.data(), q.data(), k.data(), v.data(), T, H, KV, D, T, nullptr); });
    launch(Launch::Sequential, B * T, H + 2 * KV, D / 2, [&] {
        m_fused::rope_split_bf16(qs.data(), ks.data(), vs.data(), H * D, KV * D, KV * D, cs.data(), sn.data(), q2.data(), ck.data(), cv.data(), T, H, KV, D, cap, &slot); });
    long long bad = q != q2;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < KV; h++)
            for (int s = 0; s < cap; s++)
                for (int d = 0; d < D; d++)
                {
                    size_t c = ((size_t)(b * KV + h) * cap + s) * D + d;
                    size_t o = ((size_t)(b * KV + h) * T) * D + d;
                    bad += s == slot ? (ck[c] != k[o] || cv[c] != v[o]) : (ck[c] != 0 || cv[c] != 0);
                }
    expect(bad == 0, "rope_split_bf16 into a KV cache slot = the plain layout at that slot, other slots untouched: " + std::to_string(bad) + " differ");
}

// Training's RoPE: the forward is rope_split_bf16 over one projection (KV = 0, strided rows), against HF's ops per element
// (x·cos + cat(−x2, x1)·sin, each product and the sum rounded to bf16); the backward against autograd's op sequence over
// whole tensors: P = bf16(g·cos), R = bf16(g·sin) (the gradient of cat(−x2, x1)), x1 takes R[D/2:], x2 takes −R[:D/2]
// through neg, and the slices' gradients are summed into P in bf16.
static void rope_training()
{
    const int B = 2, T = 3, H = 4, D = 8, stride = H * D + 8; // rows padded: a strided column slice
    auto xs = random_bf16(B * T * stride), cs = random_bf16(B * T * D), sn = random_bf16(B * T * D);
    std::vector<bf16> out(B * H * T * D, 0xeeee);
    launch(Launch::Sequential, B * T, H, D / 2, [&] {
        m_fused::rope_split_bf16(xs.data(), xs.data(), xs.data(), stride, stride, stride, cs.data(), sn.data(), out.data(), out.data(), out.data(), T, H, 0, D, T, nullptr); });
    long long bad = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++)
            {
                const bf16* x = &xs[((size_t)b * T + t) * stride + h * D];
                const bf16* c = &cs[((size_t)b * T + t) * D];
                const bf16* sr = &sn[((size_t)b * T + t) * D];
                for (int d = 0; d < D; d++)
                {
                    float rotated = d < D / 2 ? -bf2f(x[d + D / 2]) : bf2f(x[d - D / 2]);
                    bf16 expected = f2bf(bf2f(f2bf(bf2f(x[d]) * bf2f(c[d]))) + bf2f(f2bf(rotated * bf2f(sr[d]))));
                    bad += out[(((size_t)b * H + h) * T + t) * D + d] != expected;
                }
            }
    auto g = random_bf16(B * H * T * D);
    // −0 gradients in the first row with cos = sin = 1 there: (−0)·c + (−0)·s sums to −0 before the zero fill.
    for (int d = 0; d < D; d++) { g[d] = 0x8000; cs[d] = 0x3f80; sn[d] = 0x3f80; }
    std::vector<bf16> gx(B * T * H * D, 0xeeee);
    launch(Launch::Sequential, B * T, H, D / 2, [&] {
        m_fused::rope_bwd_bf16(g.data(), cs.data(), sn.data(), gx.data(), T, H, D); });
    const int half = D / 2;
    long long gbad = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++)
            {
                const bf16* gr = &g[(((size_t)b * H + h) * T + t) * D];
                const bf16* c = &cs[((size_t)b * T + t) * D];
                const bf16* sr = &sn[((size_t)b * T + t) * D];
                std::vector<bf16> P(D), R(D), fromSlices(D);
                for (int d = 0; d < D; d++) { P[d] = f2bf(bf2f(gr[d]) * bf2f(c[d])); R[d] = f2bf(bf2f(gr[d]) * bf2f(sr[d])); }
                for (int d = 0; d < half; d++) fromSlices[d] = R[half + d];          // x1 = x[:half] is cat's second half
                for (int d = 0; d < half; d++) fromSlices[half + d] = f2bf(-bf2f(R[d])); // x2 through neg, cat's first half
                // The third term is the other slice's zero-filled gradient: a −0 sum becomes +0, compared bit for bit.
                for (int d = 0; d < D; d++)
                    gbad += gx[((size_t)(b * T + t) * H + h) * D + d] != f2bf((bf2f(P[d]) + bf2f(fromSlices[d])) + 0.0f);
            }
    expect(bad == 0 && gbad == 0, "rope_split_bf16 over one projection (KV 0, strided rows) vs HF's ops: " + std::to_string(bad) + " differ; rope_bwd_bf16 vs autograd's ops: "
        + std::to_string(gbad) + " differ");
}

// Decoding attention against a double-precision reference (GQA, strided cache, a padded row, a fully masked row).
static void decode_attention(int groups)
{
    const int B = 3, H = 8, KV = 2, D = 64, cap = 40, S = 33;
    auto q = random_bf16(B * H * D), k = random_bf16(B * KV * cap * D), v = random_bf16(B * KV * cap * D);
    std::vector<unsigned char> mask(B * S, 1);
    for (int j = 0; j < 10; j++) mask[1 * S + j] = 0;
    for (int j = 0; j < S; j++) mask[2 * S + j] = 0;
    std::vector<bf16> out(B * H * D);
    float scale = 1.0f / std::sqrt((float)D);
    launch(Launch::Threads, B, H, D * groups, [&] {
        m_fused::decode_attention_bf16(q.data(), H * D, D, k.data(), v.data(), (long long)KV * cap * D, (long long)cap * D, D,
                                       mask.data(), S, out.data(), H, KV, S, D, scale); });
    double worst = 0;
    long long bad = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
        {
            int kh = h / (H / KV);
            std::vector<double> sc(S);
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < S; j++)
            {
                double dot = 0;
                for (int d = 0; d < D; d++) dot += (double)bf2f(q[(b * H + h) * D + d]) * bf2f(k[((size_t)(b * KV + kh) * cap + j) * D + d]);
                sc[j] = mask[b * S + j] ? dot * scale : -INFINITY;
                mx = std::max(mx, sc[j]);
            }
            for (int j = 0; j < S; j++) { sc[j] = std::isinf(mx) ? 0 : std::exp(sc[j] - mx); sum += sc[j]; }
            for (int d = 0; d < D; d++)
            {
                double acc = 0;
                for (int j = 0; j < S; j++) acc += sc[j] * bf2f(v[((size_t)(b * KV + kh) * cap + j) * D + d]);
                double ref = sum > 0 ? acc / sum : 0;
                double got = bf2f(out[(b * H + h) * D + d]);
                worst = std::max(worst, std::fabs(got - ref) / (std::fabs(ref) + 1e-2));
                bad += b == 2 && got != 0.0;
            }
        }
    expect(worst < 1e-2 && bad == 0, "decode_attention_bf16 (GQA 8/2, strided cache, padded row, masked row, " + std::to_string(groups)
        + " key groups) vs double: worst relative " + std::to_string(worst));
}

// A projection kernel's y [M, n] against double-precision dot products dot(weight, row, m): plain outputs over the
// weights side by side (n0, n1, then the rest), or the gated product of weights 0 and 1 (silu_up), each rounded as the
// kernels round, plus the residual when given; every output within one bf16 step of the reference (the gated product
// within 4 %), at least 90 % equal to it, and y untouched past its end.
static void expect_projection(const std::string& what, int M, int n, const std::vector<bf16>& y, const bf16* resid, bool silu_up,
                              int n0, int n1, const std::function<double(int, int, int)>& dot)
{
    long long exact = 0, bad = 0;
    for (int m = 0; m < M; m++)
        for (int r = 0; r < n; r++)
        {
            float ref;
            if (silu_up) ref = bf2f(silu_mul_ref(f2bf((float)dot(0, r, m)), f2bf((float)dot(1, r, m))));
            else ref = bf2f(f2bf((float)(r < n0 ? dot(0, r, m) : r < n0 + n1 ? dot(1, r - n0, m) : dot(2, r - n0 - n1, m))));
            if (resid) ref = bf2f(f2bf(bf2f(resid[(size_t)m * n + r]) + ref));
            float got = bf2f(y[(size_t)m * n + r]);
            exact += got == ref;
            bad += !(std::fabs(got - ref) <= std::fabs(ref) * (silu_up ? 0.04f : 0.008f) + 1e-6f);
        }
    long long all = (long long)M * n;
    expect(bad == 0 && exact * 10 >= all * 9 && y[(size_t)M * n] == 0xffff,
           what + ": " + std::to_string(exact) + "/" + std::to_string(all) + " equal the rounded double, " + std::to_string(bad) + " beyond one bf16 step");
}

// Decoding projections against double-precision dot products: three weights side by side (a K that leaves lanes idle in
// the last step), and the gated product of two (silu mode), each output within one bf16 step of the rounded reference.
static void gemv(int M, int K, int n0, int n1, int n2, bool silu_up, bool with_resid = false)
{
    auto x = random_bf16((size_t)M * K), w0 = random_bf16((size_t)n0 * K, 0.2f), w1 = random_bf16((size_t)n1 * K, 0.2f), w2 = random_bf16((size_t)n2 * K, 0.2f);
    int n = silu_up ? n0 : n0 + n1 + n2;
    auto resid = random_bf16((size_t)M * n, 3.0f);
    std::vector<bf16> y((size_t)M * n + 8, 0xffff);
    launch(Launch::Threads, blocks(n, 8), 1, 256, [&] {
        m_fused::gemv_bf16(x.data(), M, K, w0.data(), n0, n1 ? w1.data() : nullptr, n1, n2 ? w2.data() : nullptr, n2, y.data(), n, silu_up ? 1 : 0,
                           with_resid ? resid.data() : nullptr); });
    auto dot = [&](const std::vector<bf16>& w, int row, int m) {
        double s = 0;
        for (int k = 0; k < K; k++) s += (double)bf2f(x[(size_t)m * K + k]) * bf2f(w[(size_t)row * K + k]);
        return s;
    };
    expect_projection(std::string("gemv_bf16 ") + (silu_up ? "silu(x·gate)·(x·up)" : "x·[w0; w1; w2]") + (with_resid ? " + residual" : "")
                      + " M=" + std::to_string(M) + " K=" + std::to_string(K), M, n, y, with_resid ? resid.data() : nullptr, silu_up, n0, n1,
                      [&](int i, int row, int m) { return dot(i == 0 ? w0 : i == 1 ? w1 : w2, row, m); });
}

// The 4-bit decoding GEMV, one to three weights in a launch and the gated product of two, against double-precision dot
// products with the dequantized weights (bf16(nf4[code] · scale), the scale as the dequantize kernels compute it).
struct Nf4W { std::vector<unsigned char> packed, codes; std::vector<float> scales, nested; int n; };
static void nf4_gemv(int M, int K, std::vector<int> ns, bool silu_up, bool dq, bool with_resid = false)
{
    const int block = 64;
    std::vector<float> pairs(512), map(256);
    float nf4v[16] = {-1.0f, -0.6961928f, -0.5250731f, -0.3949175f, -0.2844414f, -0.1848449f, -0.0910500f, 0.0f,
                      0.0795803f, 0.1609302f, 0.2461123f, 0.3379152f, 0.4407098f, 0.5626170f, 0.7229568f, 1.0f};
    for (int b = 0; b < 256; b++) { pairs[2 * b] = nf4v[b >> 4]; pairs[2 * b + 1] = nf4v[b & 15]; }
    for (int i = 0; i < 256; i++) map[i] = (i - 128) / 1270.0f;
    const float offset = 0.03125f;
    std::vector<Nf4W> w(3);
    for (int i = 0; i < 3; i++)
    {
        w[i].n = i < (int)ns.size() ? ns[i] : 0;
        long long e = (long long)std::max(w[i].n, 1) * K, nb = e / block;
        w[i].packed.resize(e / 2 + 16);
        for (auto& b : w[i].packed) b = (unsigned char)(rng() & 0xff);
        w[i].codes.resize(nb);
        for (auto& c : w[i].codes) c = (unsigned char)(rng() & 0xff);
        w[i].scales = random_f32(nb);
        w[i].nested = random_f32(nb / 4 + 1);
    }
    auto x = random_bf16((size_t)M * K);
    int n = silu_up ? ns[0] : ns[0] + (ns.size() > 1 ? ns[1] : 0) + (ns.size() > 2 ? ns[2] : 0);
    std::vector<bf16> y((size_t)M * n + 8, 0xffff);
    auto resid = random_bf16((size_t)M * n, 3.0f);
    auto absmax = [&](int i) -> const void* { return dq ? (const void*)w[i].codes.data() : (const void*)w[i].scales.data(); };
    launch(Launch::Threads, blocks(n, 8), 1, 256, [&] {
        m_nf4::nf4_gemv_bf16(x.data(), M, K,
            w[0].packed.data(), absmax(0), w[0].nested.data(), map.data(), offset, w[0].n,
            w[1].packed.data(), absmax(1), w[1].nested.data(), map.data(), offset, w[1].n,
            w[2].packed.data(), absmax(2), w[2].nested.data(), map.data(), offset, w[2].n,
            dq ? 1 : 0, pairs.data(), block, 4, y.data(), n, silu_up ? 1 : 0, with_resid ? resid.data() : nullptr); });
    auto dot = [&](int i, int row, int m) {
        double acc = 0;
        for (int k = 0; k < K; k++)
        {
            long long e = (long long)row * K + k, blk = e / block;
            float sc = dq ? __fadd_rn(__fmul_rn(map[w[i].codes[blk]], w[i].nested[blk / 4]), offset) : w[i].scales[blk];
            unsigned char b = w[i].packed[e / 2];
            float wv = bf2f(f2bf(__fmul_rn(pairs[2 * b + (e & 1)], sc)));
            acc += (double)bf2f(x[(size_t)m * K + k]) * wv;
        }
        return acc;
    };
    expect_projection(std::string("nf4_gemv_bf16 ") + (silu_up ? "silu(x·gate)·(x·up)" : std::to_string(ns.size()) + " weight(s)") + (dq ? " double-quant" : "")
                      + (with_resid ? " + residual" : "") + " M=" + std::to_string(M) + " K=" + std::to_string(K), M, n, y,
                      with_resid ? resid.data() : nullptr, silu_up, w[0].n, w[1].n, dot);
}

// The fused AdamW step (FlatAdamW) over parameters in separate allocations, each between guard elements, found through
// the offset table: every parameter and moment element against a float reference in the op sequence's order and
// rounding (exactly equal), the guards and the moments past n untouched, and the reference within float rounding of a
// double-precision AdamW step (so the scalars mean what the kernel's arguments say). Parameters of odd sizes put
// boundaries anywhere in a block's stride, so an element given to a neighbouring parameter shows up as a difference.
static void adamw(const std::vector<long long>& counts, bool with_decay, unsigned threads, const std::string& what, bool separate_moments = false)
{
    const int P = (int)counts.size();
    std::vector<long long> offsets(P + 1, 0);
    for (int k = 0; k < P; k++) offsets[k + 1] = offsets[k] + counts[k];
    const long long n = offsets[P];
    const float guard = -12345.0f;
    std::vector<std::vector<float>> params(P), before(P);
    std::vector<long long> ptrs(P);
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (int k = 0; k < P; k++)
    {
        params[k].assign(counts[k] + 8, guard); // a separate allocation per parameter: 4 guards, the values, 4 guards
        for (long long e = 0; e < counts[k]; e++) params[k][4 + e] = d(rng);
        ptrs[k] = (long long)(params[k].data() + 4);
        before[k] = params[k];
    }
    auto g = random_f32(n), m = random_f32(n + 16), v = random_f32(n + 16);
    for (auto& x : m) x *= 0.1f;
    for (auto& x : v) x = x * x * 0.01f;
    const auto m0 = m, v0 = v;
    // The moments where the table says: views of two flat buffers (the op sequence's layout, 16 spare elements past n
    // that must stay untouched), or, with separate_moments, each parameter's own allocation between guards (where the
    // optimizer allocated them), the flat vectors m and v then only holding their initial and final values.
    std::vector<std::vector<float>> ms(P), vs(P);
    std::vector<long long> table(3 * P);
    for (int k = 0; k < P; k++)
    {
        table[k] = ptrs[k];
        if (separate_moments)
        {
            ms[k].assign(counts[k] + 8, guard);
            vs[k].assign(counts[k] + 8, guard);
            for (long long e = 0; e < counts[k]; e++) { ms[k][4 + e] = m[offsets[k] + e]; vs[k][4 + e] = v[offsets[k] + e]; }
            table[P + k] = (long long)(ms[k].data() + 4);
            table[2 * P + k] = (long long)(vs[k].data() + 4);
        }
        else
        {
            table[P + k] = (long long)(m.data() + offsets[k]);
            table[2 * P + k] = (long long)(v.data() + offsets[k]);
        }
    }
    const double lr = 1e-2, wd = with_decay ? 0.1 : 0.0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    const long long step = 3;
    const double bc1 = 1 - std::pow(beta1, step), bc2 = 1 - std::pow(beta2, step);
    // The scalars as FlatAdamW passes them.
    const float decay = (float)(1 - lr * wd), b1 = (float)beta1, omb1 = (float)(1 - beta1), b2 = (float)beta2, omb2 = (float)(1 - beta2);
    const float inv_bc2 = 1.0f / (float)std::sqrt(bc2), epsf = (float)eps, step_size = (float)(-lr / bc1);
    launch(Launch::Sequential, blocks(n, threads * 4), 1, threads, [&] {
        m_adamw::adamw_flat_f32(g.data(), table.data(), offsets.data(), P, n, with_decay ? 1 : 0, decay,
                                b1, omb1, b2, omb2, inv_bc2, epsf, step_size); });
    if (separate_moments)
        for (int k = 0; k < P; k++)
            for (long long e = 0; e < counts[k]; e++) { m[offsets[k] + e] = ms[k][4 + e]; v[offsets[k] + e] = vs[k][4 + e]; }
    long long bad = 0, guards = 0;
    double worst = 0;
    for (int k = 0; k < P; k++)
    {
        for (int e = 0; e < 4; e++) guards += params[k][e] != guard || params[k][4 + counts[k] + e] != guard;
        if (separate_moments)
            for (int e = 0; e < 4; e++)
                guards += ms[k][e] != guard || ms[k][4 + counts[k] + e] != guard || vs[k][e] != guard || vs[k][4 + counts[k] + e] != guard;
        for (long long e = 0; e < counts[k]; e++)
        {
            long long i = offsets[k] + e;
            // p.mul_(1 − lr·wd); exp_avg.mul_(β₁).add_(g, 1 − β₁); exp_avg_sq.mul_(β₂).addcmul_(g, g, 1 − β₂);
            // (sqrt(v) / √bc2).add_(ε) with libtorch's reciprocal; p.add_(exp_avg.div(denom).mul_(step_size)).
            float w = before[k][4 + e];
            if (with_decay) w = w * decay;
            float mr = std::fmaf(omb1, g[i], m0[i] * b1);
            float vr = std::fmaf(omb2, g[i] * g[i], v0[i] * b2);
            float dr = std::sqrt(vr) * inv_bc2 + epsf;
            float pr = w + (mr / dr) * step_size;
            bad += params[k][4 + e] != pr || m[i] != mr || v[i] != vr;
            // AdamW in double from the same inputs.
            double md = beta1 * m0[i] + (1 - beta1) * g[i], vd = beta2 * v0[i] + (1 - beta2) * (double)g[i] * g[i];
            double update = lr / bc1 * md / (std::sqrt(vd) / std::sqrt(bc2) + eps);
            double pd = (double)before[k][4 + e] * (1 - lr * wd) - update;
            worst = std::max(worst, std::fabs(pr - pd) / (std::fabs(pd) + std::fabs(update))); // relative to the terms' size
        }
    }
    for (long long i = n; i < n + 16; i++) guards += m[i] != m0[i] || v[i] != v0[i];
    expect(bad == 0 && guards == 0 && worst < 1e-6, "adamw_flat_f32 " + what + (with_decay ? ", decay" : ", no decay")
        + (separate_moments ? ", moments apart" : ", flat moments") + ", " + std::to_string(threads)
        + " threads: " + std::to_string(bad) + " of " + std::to_string(n) + " differ, " + std::to_string(guards) + " guards touched, vs double "
        + sci(worst));
}

// The fused gradient norm (GradientClipping): gradients as contiguous views of one or two flat buffers (consecutive in
// each, a buffer's first element `misalign` floats past a 16-byte boundary so the float4 path and the element path
// both run, segments of lengths that are not multiples of 4 shifting the later ones' alignment), the int64 table
// as the host builds it (addresses, lengths, chunk starts), pass 1 over every chunk with the block's threads as host
// threads, pass 2 in one block. Each gradient's float32 norm and the total against double-precision references within
// one float32 rounding step (2^-23 relative; the total within two, 2^-22: the kernels sum in double, so only the final
// roundings remain; libtorch's float32 norms are within float rounding of the same references), nothing written past the partials or the norms,
// and a second run without the norms output gives the same total bit for bit.
static void grad_norm(const std::vector<long long>& lengths, long long chunk, unsigned threads, int misalign, int buffers, const std::string& what)
{
    const int P = (int)lengths.size();
    std::vector<std::vector<float>> flat(buffers);
    std::vector<long long> fill(buffers, 0), at(P);
    for (int k = 0; k < P; k++) { at[k] = fill[k % buffers]; fill[k % buffers] += lengths[k]; }
    std::normal_distribution<float> d(0.0f, 1.0f);
    for (int b = 0; b < buffers; b++)
    {
        flat[b].assign(fill[b] + 8, 0.0f); // 4-float aligned start (vector storage is 16-byte aligned), then misalign
        for (auto& x : flat[b]) x = d(rng);
    }
    std::vector<long long> table(3 * P + 1, 0);
    std::vector<double> ref(P, 0.0);
    double ref_all = 0.0;
    for (int k = 0; k < P; k++)
    {
        float* x = flat[k % buffers].data() + misalign + at[k];
        float scale = std::ldexp(1.0f, (k % 9) - 4); // magnitudes from 1/16 to 16
        for (long long e = 0; e < lengths[k]; e++) { x[e] *= scale; ref[k] += (double)x[e] * x[e]; }
        ref_all += ref[k];
        table[k] = (long long)x;
        table[P + k] = lengths[k];
        table[2 * P + k + 1] = table[2 * P + k] + (lengths[k] + chunk - 1) / chunk;
    }
    const long long chunks = table[3 * P];
    const double sentinel = -7.0;
    std::vector<double> partials(chunks + 4, sentinel);
    std::vector<float> norms(P + 4, -1.0f);
    float total = -1.0f, again = -2.0f;
    if (chunks > 0)
        launch(Launch::Threads, (unsigned)chunks, 1, threads, [&] { m_gradnorm::grad_sumsq_f32(table.data(), P, chunk, partials.data()); });
    launch(Launch::Threads, 1, 1, threads, [&] { m_gradnorm::grad_norm_total_f32(table.data(), P, partials.data(), norms.data(), &total); });
    launch(Launch::Threads, 1, 1, threads, [&] { m_gradnorm::grad_norm_total_f32(table.data(), P, partials.data(), nullptr, &again); });
    const double ulp = std::ldexp(1.0, -23);
    long long bad = 0, past = 0;
    for (int k = 0; k < P; k++)
    {
        double r = std::sqrt(ref[k]);
        bad += !(std::fabs(norms[k] - r) <= r * ulp);
    }
    for (long long c = chunks; c < chunks + 4; c++) past += partials[c] != sentinel;
    for (int k = P; k < P + 4; k++) past += norms[k] != -1.0f;
    double r = std::sqrt(ref_all), rel = r > 0 ? std::fabs(total - r) / r : std::fabs(total); // no elements: exactly 0
    expect(bad == 0 && past == 0 && rel <= 2 * ulp && std::memcmp(&total, &again, 4) == 0,
        "grad_sumsq_f32 + grad_norm_total_f32 " + what + ", chunk " + std::to_string(chunk) + ", " + std::to_string(threads) + " threads, misalign "
        + std::to_string(misalign) + ", " + std::to_string(buffers) + " buffer(s), " + std::to_string(chunks) + " blocks: " + std::to_string(bad) + " of "
        + std::to_string(P) + " norms beyond 2^-23, " + std::to_string(past) + " written past the end, total vs double " + sci(rel)
        + (std::memcmp(&total, &again, 4) == 0 ? "" : ", second run differs"));
}

// The embedding gather (TokenEmbedding's gather_rows): rows of a table of random bytes picked by ids with repeats, the
// first and last rows, every byte equal to the row it names and nothing written past the last row; an id past the
// table or below zero traps (as libtorch's CUDA index_select asserts) instead of reading outside the table.
static void gather_rows(long long vocab, long long row_vecs, unsigned threads)
{
    std::vector<uint4> table(vocab * row_vecs);
    for (auto& v : table) v = uint4{(unsigned)rng(), (unsigned)rng(), (unsigned)rng(), (unsigned)rng()};
    std::vector<long long> ids = {0, vocab - 1, 3 % vocab, 3 % vocab, vocab / 2};
    for (int i = 0; i < 11; i++) ids.push_back((long long)(rng() % vocab));
    const long long rows = (long long)ids.size();
    std::vector<uint4> out((rows + 1) * row_vecs, uint4{0xeeeeeeeeu, 0xeeeeeeeeu, 0xeeeeeeeeu, 0xeeeeeeeeu});
    launch(Launch::Sequential, (unsigned)rows, 1, threads, [&] {
        m_embed::gather_rows(table.data(), ids.data(), out.data(), rows, row_vecs, vocab); });
    long long bad = 0, past = 0;
    for (long long r = 0; r < rows; r++)
        bad += std::memcmp(&out[r * row_vecs], &table[ids[r] * row_vecs], row_vecs * sizeof(uint4)) != 0;
    for (long long j = 0; j < row_vecs; j++) past += out[rows * row_vecs + j].x != 0xeeeeeeeeu;
    int traps = 0;
    for (long long badId : {vocab, -1LL})
    {
        std::vector<long long> wrong = {1, badId};
        try
        {
            launch(Launch::Sequential, 2, 1, threads, [&] {
                m_embed::gather_rows(table.data(), wrong.data(), out.data(), 2, row_vecs, vocab); });
        }
        catch (const device_trap&)
        {
            traps++;
        }
    }
    expect(bad == 0 && past == 0 && traps == 2, "gather_rows vocab " + std::to_string(vocab) + ", " + std::to_string(row_vecs)
        + " vectors a row, " + std::to_string(threads) + " threads: " + std::to_string(bad) + " of " + std::to_string(rows)
        + " rows differ, " + std::to_string(past) + " written past the end, " + std::to_string(traps) + " of 2 bad ids trapped");
}

int main()
{
    silu_mul(3, 40, 40, 40, 0, "contiguous (vector path)");
    silu_mul(3, 40, 48, 56, 0, "strided rows (vector path)");
    silu_mul(3, 40, 40, 40, 1, "misaligned (element path)");
    silu_mul(5, 13, 13, 13, 0, "13 columns (element path)");
    silu_mul_bwd(1003, 0);
    silu_mul_bwd(1003, 3);
    lora_combine(1003, 0, 0);
    lora_combine(1003, 1, 0);
    lora_combine(1003, 0, 5);
    lora_dropout(100003, 0);
    lora_dropout(1003, 3);
    lora_projection(300, 520, 16, 0.1, 64, 64);     // row, k and t tails; 9 k splits, 5 t splits
    lora_projection(130, 1024, 5, 0.1, 1024, 130);  // r not a multiple of 4 (padded columns), one split each way
    lora_projection(40, 264, 64, 0.0, 96, 32);      // r 64 (256 threads), no dropout (the cast alone)
    lora_projection(7, 8, 1, 0.5, 32, 32);          // one 8-column group, r 1
    lora_projection(50, 1032, 16, 0.0, 256, 32, 0.5f); // no mask, scale 0.5 (LoRA-B's backward through these kernels)
    lora_b_combine(37, 1032, 16, 0);
    lora_b_combine(37, 1032, 16, 1);
    lora_b_combine(16, 8, 5, 0);
    nf4(64 * 21, 64, false, true, 0);
    nf4(64 * 21, 64, true, true, 0);
    nf4(64 * 21, 64, true, false, 0);
    nf4(64 * 21 + 6, 64, true, true, 0);
    nf4(64 * 21, 64, true, true, 1);
    nf4(100 * 21, 100, false, true, 0);
    rope_into_cache();
    rope_training();
    decode_attention(1);
    decode_attention(8);
    decode_attention(3);
    gemv(3, 72, 5, 3, 2, false);
    gemv(1, 512, 9, 4, 4, false);
    gemv(8, 264, 7, 7, 0, true);
    nf4_gemv(1, 1024, {5}, false, true);
    nf4_gemv(3, 1088, {4, 3, 2}, false, true);
    nf4_gemv(2, 512, {3, 2, 2}, false, false);
    nf4_gemv(8, 1024, {6, 6}, true, true);
    nf4_gemv(3, 1024, {7}, false, true, true);
    gemv(3, 512, 9, 0, 0, false, true);
    adamw({5, 64, 1, 300}, true, 256, "4 parameters (5, 64, 1, 300)");
    adamw({5, 64, 1, 300}, false, 256, "4 parameters (5, 64, 1, 300)");
    adamw({5, 64, 1, 0, 300, 7}, true, 32, "6 parameters (5, 64, 1, 0, 300, 7)");
    adamw({5, 64, 1, 0, 300, 7}, true, 32, "6 parameters (5, 64, 1, 0, 300, 7)", true);
    adamw({5, 64, 1, 300}, false, 256, "4 parameters (5, 64, 1, 300)", true);
    adamw({1000 * 16 + 3}, true, 256, "1 parameter of 16003");
    {
        std::vector<long long> many(700);
        for (auto& c : many) c = (long long)(rng() % 6); // 0 to 5 elements: many boundaries in every thread's stride
        adamw(many, true, 64, "700 parameters of 0 to 5");
        adamw(many, true, 64, "700 parameters of 0 to 5", true);
    }
    gather_rows(37, 512, 256);
    gather_rows(5, 3, 32);
    grad_norm({1}, 8192, 256, 0, 1, "1 gradient of 1");
    grad_norm({5, 64, 1, 300}, 64, 32, 0, 1, "4 gradients (5, 64, 1, 300)");
    grad_norm({0, 7, 0, 1024, 13, 0}, 256, 64, 0, 1, "6 gradients (0, 7, 0, 1024, 13, 0)");
    grad_norm({0, 7, 0, 1024, 13, 0}, 256, 64, 1, 1, "6 gradients (0, 7, 0, 1024, 13, 0)");
    grad_norm({3, 1000, 4096, 0, 65536}, 1024, 128, 2, 2, "5 gradients (3, 1000, 4096, 0, 65536)");
    grad_norm({3, 1000, 4096, 0, 65536}, 8192, 256, 0, 1, "5 gradients (3, 1000, 4096, 0, 65536)");
    grad_norm({0, 0}, 8192, 32, 0, 1, "2 empty gradients");
    {
        std::vector<long long> many(449);
        for (auto& c : many) c = (long long)(rng() % 3000); // 0 to 2999: most not multiples of 4, a few empty at most
        many[7] = 0;
        many[100] = 1;
        grad_norm(many, 1024, 64, 0, 2, "449 gradients of 0 to 2999");
        grad_norm(many, 8192, 32, 3, 1, "449 gradients of 0 to 2999");
    }
    grad_norm({(1 << 20) + 3, 17, 1 << 20}, 8192, 32, 0, 1, "3 gradients (1048579, 17, 1048576)");
    grad_norm({(1 << 20) + 3, 17, 1 << 20}, 16384, 64, 1, 2, "3 gradients (1048579, 17, 1048576)");
    std::printf("%s: %d failed\n", failures ? "FAILED" : "ALL PASSED", failures);
    return failures ? 1 : 0;
}
