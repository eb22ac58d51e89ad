// CPU kernels for the three spots where a training step spends most of its time in many
// tiny ATen calls: the gradient of a gather-sum (a row scatter), the folded first-layer
// table, and the gate mixing of expert outputs. Plain loops that the compiler vectorises
// over the contiguous last dimension (dot products through `omp simd` reductions, which
// reorder the sum like any BLAS does); float and double (double for gradcheck).
//
// Built at first use by mmoe/native/__init__.py (torch.utils.cpp_extension). Two ops are
// registered, fold_linear and mix (each with its backward); the other functions are their
// parts. Both have pure-torch twins in mmoe/nn, used when no C++ compiler is available;
// tests compare them.

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

// The folded first layer in one call: out (B, N) = numeric @ weight[:n_num] + bias +
// sum_c table[rows[b, c]], table = fold_table(emb, weight[n_num:] as (C, D, N), column).
// numeric (B, n_num) or undefined when n_num == 0; rows (B, C) rows of the table.
at::Tensor fold_linear(const c10::optional<at::Tensor>& numeric, const at::Tensor& rows,
                       const at::Tensor& emb, const at::Tensor& weight,
                       const c10::optional<at::Tensor>& bias, const at::Tensor& column) {
  const int64_t B = rows.size(0), C = rows.size(1), D = emb.size(1), N = weight.size(1);
  const int64_t n_num = weight.size(0) - C * D;
  TORCH_CHECK(n_num >= 0 && (n_num == 0 || (numeric.has_value() && numeric->size(1) == n_num)),
              "fold_linear: weight rows must be n_num + C * D");
  const auto table = fold_table(emb, weight.narrow(0, n_num, C * D).view({C, D, N}), column);
  const auto flat = rows.to(at::kLong).reshape({-1});
  const auto offsets = at::arange(0, B * C, C, flat.options());
  auto out = std::get<0>(at::embedding_bag(table, flat, offsets));  // (B, N) sums
  if (n_num) out.addmm_(*numeric, weight.narrow(0, 0, n_num));
  if (bias.has_value()) out.add_(*bias);
  return out;
}

// Gradients of fold_linear: d_emb (V, D), d_weight (n_num + C * D, N), d_bias (N,).
std::tuple<at::Tensor, at::Tensor, at::Tensor> fold_linear_backward(
    const at::Tensor& grad, const c10::optional<at::Tensor>& numeric, const at::Tensor& rows,
    const at::Tensor& emb, const at::Tensor& weight, const at::Tensor& column) {
  const int64_t C = rows.size(1), D = emb.size(1), N = weight.size(1);
  const int64_t n_num = weight.size(0) - C * D;
  const auto g = grad.contiguous();
  const auto d_table = scatter_rows(g, rows, emb.size(0));
  auto [d_emb, d_wcat] = fold_table_backward(
      d_table, emb, weight.narrow(0, n_num, C * D).view({C, D, N}), column);
  auto d_weight = at::empty_like(weight);
  d_weight.narrow(0, n_num, C * D).copy_(d_wcat.view({C * D, N}));
  if (n_num) {
    auto d_num = d_weight.narrow(0, 0, n_num);
    at::mm_out(d_num, numeric->t(), g);
  }
  return {d_emb, d_weight, g.sum(0)};
}

}  // namespace

TORCH_LIBRARY(mmoe_native, m) {
  m.def("mix(Tensor gates, Tensor experts) -> Tensor");
  m.def("mix_backward(Tensor grad, Tensor gates, Tensor experts) -> (Tensor, Tensor)");
  m.def("fold_linear(Tensor? numeric, Tensor rows, Tensor emb, Tensor weight, Tensor? bias, "
        "Tensor column) -> Tensor");
  m.def("fold_linear_backward(Tensor grad, Tensor? numeric, Tensor rows, Tensor emb, "
        "Tensor weight, Tensor column) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mmoe_native, CPU, m) {
  m.impl("mix", &mix);
  m.impl("mix_backward", &mix_backward);
  m.impl("fold_linear", &fold_linear);
  m.impl("fold_linear_backward", &fold_linear_backward);
}
