// CPU kernels for the three spots where a training step spends most of its time in many
// tiny ATen calls: the gradient of a gather-sum (a row scatter), the folded first-layer
// table, and the gate mixing of expert outputs. Plain loops that the compiler vectorises
// over the contiguous last dimension (dot products through `omp simd` reductions, which
// reorder the sum like any BLAS does); float and double (double for gradcheck).
//
// Built at first use by mmoe/native/__init__.py (torch.utils.cpp_extension); every op has a
// pure-torch twin in mmoe/nn, used when no C++ compiler is available; tests compare them.

#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

namespace {

// out (V, N): out[rows[b, c]] += grad[b] for every b, c (the transpose of a gather-sum).
at::Tensor scatter_rows(const at::Tensor& grad, const at::Tensor& rows, int64_t num_rows) {
  TORCH_CHECK(grad.dim() == 2 && rows.dim() == 2 && grad.size(0) == rows.size(0),
              "scatter_rows: grad (B, N) and rows (B, C) expected");
  const auto g = grad.contiguous();
  const auto r = rows.to(at::kLong).contiguous();
  if (r.numel()) {
    const auto [lo, hi] = at::aminmax(r);
    TORCH_CHECK(lo.item<int64_t>() >= 0 && hi.item<int64_t>() < num_rows,
                "scatter_rows: rows out of range [0, ", num_rows, ")");
  }
  const int64_t B = g.size(0), N = g.size(1), C = r.size(1);
  auto out = at::zeros({num_rows, N}, g.options());
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "scatter_rows", [&] {
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const int64_t* rp = r.data_ptr<int64_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b) {
      const scalar_t* __restrict__ src = gp + b * N;
      for (int64_t c = 0; c < C; ++c) {
        scalar_t* __restrict__ dst = op + rp[b * C + c] * N;
        for (int64_t n = 0; n < N; ++n) dst[n] += src[n];
      }
    }
  });
  return out;
}

// table (V, N): table[v] = emb[v] @ weight[column[v]]; emb (V, D), weight (C, D, N).
at::Tensor fold_table(const at::Tensor& emb, const at::Tensor& weight,
                      const at::Tensor& column) {
  TORCH_CHECK(emb.dim() == 2 && weight.dim() == 3 && weight.size(1) == emb.size(1),
              "fold_table: emb (V, D) and weight (C, D, N) expected");
  const auto e = emb.contiguous();
  const auto w = weight.contiguous();
  const auto col = column.to(at::kLong).contiguous();
  const int64_t V = e.size(0), D = e.size(1), N = w.size(2);
  auto out = at::zeros({V, N}, e.options());
  AT_DISPATCH_FLOATING_TYPES(e.scalar_type(), "fold_table", [&] {
    const scalar_t* ep = e.data_ptr<scalar_t>();
    const scalar_t* wp = w.data_ptr<scalar_t>();
    const int64_t* cp = col.data_ptr<int64_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    {
      for (int64_t v = 0; v < V; ++v) {
        scalar_t* __restrict__ dst = op + v * N;
        for (int64_t d = 0; d < D; ++d) {
          const scalar_t x = ep[v * D + d];
          const scalar_t* __restrict__ src = wp + (cp[v] * D + d) * N;
          for (int64_t n = 0; n < N; ++n) dst[n] += x * src[n];
        }
      }
    }
  });
  return out;
}

// Gradients of fold_table: d_emb (V, D), d_weight (C, D, N).
std::tuple<at::Tensor, at::Tensor> fold_table_backward(const at::Tensor& grad,
                                                       const at::Tensor& emb,
                                                       const at::Tensor& weight,
                                                       const at::Tensor& column) {
  const auto g = grad.contiguous();
  const auto e = emb.contiguous();
  const auto w = weight.contiguous();
  const auto col = column.to(at::kLong).contiguous();
  const int64_t V = e.size(0), D = e.size(1), N = w.size(2);
  auto d_emb = at::empty_like(e);
  auto d_weight = at::zeros_like(w);
  AT_DISPATCH_FLOATING_TYPES(e.scalar_type(), "fold_table_backward", [&] {
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* ep = e.data_ptr<scalar_t>();
    const scalar_t* wp = w.data_ptr<scalar_t>();
    const int64_t* cp = col.data_ptr<int64_t>();
    scalar_t* dep = d_emb.data_ptr<scalar_t>();
    scalar_t* dwp = d_weight.data_ptr<scalar_t>();
    for (int64_t v = 0; v < V; ++v) {  // serial: rows of one column share d_weight[c]
      const scalar_t* __restrict__ gv = gp + v * N;
      for (int64_t d = 0; d < D; ++d) {
        const scalar_t* __restrict__ wcd = wp + (cp[v] * D + d) * N;
        scalar_t* __restrict__ dw = dwp + (cp[v] * D + d) * N;
        const scalar_t x = ep[v * D + d];
        scalar_t acc = 0;
        _Pragma("omp simd reduction(+ : acc)")
        for (int64_t n = 0; n < N; ++n) {
          acc += gv[n] * wcd[n];
          dw[n] += x * gv[n];
        }
        dep[v * D + d] = acc;
      }
    }
  });
  return {d_emb, d_weight};
}

// out (G, B, H): out[g, b] = sum_e gates[g, b, e] * experts[e, b]; any strides with a
// unit-stride last dimension (the experts usually arrive as a transposed (B, E, H) block).
at::Tensor mix(const at::Tensor& gates, const at::Tensor& experts) {
  TORCH_CHECK(gates.dim() == 3 && experts.dim() == 3 && gates.size(2) == experts.size(0) &&
                  gates.size(1) == experts.size(1),
              "mix: gates (G, B, E) and experts (E, B, H) expected");
  const auto gt = gates.contiguous();
  const auto ex = experts.stride(2) == 1 ? experts : experts.contiguous();
  const int64_t G = gt.size(0), B = gt.size(1), E = gt.size(2), H = ex.size(2);
  const int64_t se = ex.stride(0), sb = ex.stride(1);
  auto out = at::zeros({G, B, H}, gt.options());
  AT_DISPATCH_FLOATING_TYPES(gt.scalar_type(), "mix", [&] {
    const scalar_t* gp = gt.data_ptr<scalar_t>();
    const scalar_t* xp = ex.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    {
      for (int64_t g = 0; g < G; ++g) {
        for (int64_t b = 0; b < B; ++b) {
          scalar_t* __restrict__ dst = op + (g * B + b) * H;
          const scalar_t* gate = gp + (g * B + b) * E;
          for (int64_t e = 0; e < E; ++e) {
            const scalar_t* __restrict__ src = xp + e * se + b * sb;
            const scalar_t a = gate[e];
            for (int64_t h = 0; h < H; ++h) dst[h] += a * src[h];
          }
        }
      }
    }
  });
  return out;
}

// Gradients of mix: d_gates (G, B, E), d_experts (E, B, H) (contiguous).
std::tuple<at::Tensor, at::Tensor> mix_backward(const at::Tensor& grad, const at::Tensor& gates,
                                                const at::Tensor& experts) {
  const auto gr = grad.contiguous();
  const auto gt = gates.contiguous();
  const auto ex = experts.stride(2) == 1 ? experts : experts.contiguous();
  const int64_t G = gt.size(0), B = gt.size(1), E = gt.size(2), H = ex.size(2);
  const int64_t se = ex.stride(0), sb = ex.stride(1);
  auto d_gates = at::empty_like(gt);
  auto d_experts = at::zeros({E, B, H}, gt.options());
  AT_DISPATCH_FLOATING_TYPES(gt.scalar_type(), "mix_backward", [&] {
    const scalar_t* rp = gr.data_ptr<scalar_t>();
    const scalar_t* gp = gt.data_ptr<scalar_t>();
    const scalar_t* xp = ex.data_ptr<scalar_t>();
    scalar_t* dgp = d_gates.data_ptr<scalar_t>();
    scalar_t* dxp = d_experts.data_ptr<scalar_t>();
    {
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t g = 0; g < G; ++g) {
          const scalar_t* __restrict__ gb = rp + (g * B + b) * H;
          for (int64_t e = 0; e < E; ++e) {
            const scalar_t* __restrict__ src = xp + e * se + b * sb;
            scalar_t* __restrict__ dx = dxp + (e * B + b) * H;
            const scalar_t a = gp[(g * B + b) * E + e];
            scalar_t acc = 0;
        _Pragma("omp simd reduction(+ : acc)")
            for (int64_t h = 0; h < H; ++h) {
              acc += gb[h] * src[h];
              dx[h] += a * gb[h];
            }
            dgp[(g * B + b) * E + e] = acc;
          }
        }
      }
    }
  });
  return {d_gates, d_experts};
}

}  // namespace

TORCH_LIBRARY(mmoe_native, m) {
  m.def("scatter_rows(Tensor grad, Tensor rows, int num_rows) -> Tensor");
  m.def("fold_table(Tensor emb, Tensor weight, Tensor column) -> Tensor");
  m.def("fold_table_backward(Tensor grad, Tensor emb, Tensor weight, Tensor column) "
        "-> (Tensor, Tensor)");
  m.def("mix(Tensor gates, Tensor experts) -> Tensor");
  m.def("mix_backward(Tensor grad, Tensor gates, Tensor experts) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mmoe_native, CPU, m) {
  m.impl("scatter_rows", &scatter_rows);
  m.impl("fold_table", &fold_table);
  m.impl("fold_table_backward", &fold_table_backward);
  m.impl("mix", &mix);
  m.impl("mix_backward", &mix_backward);
}
