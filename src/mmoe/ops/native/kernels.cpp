// CPU kernels for the spots where a training step spends most of its time in many tiny ATen
// calls: the folded first layer (a gather-sum of table rows, forward; a row scatter and the
// table's gradient, backward), small grouped linear layers and the gate mixing of expert
// outputs (eq. 5). float and double (double for gradcheck).
//
// Loops run over the contiguous last dimension in blocks of 4, 2 or 1 SIMD vectors (GCC/Clang
// vector extensions, 32 bytes: AVX2 on x86-64) whose accumulators stay in registers, then
// scalars. at::parallel_for splits rows, groups or segments over torch's intra-op threads, so
// no output element is summed by two threads: results do not depend on the thread count.
//
// Built and loaded by mmoe/ops/native/loader.py (torch.utils.cpp_extension). Four ops are
// registered, fold_linear, grouped_linear and mix (each with its backward) and take_rows (a
// batch's rows of a table); the other functions are their parts. Each op's specification is
// its plain-torch function in mmoe/ops/reference.py, which the tests hold them to; what each
// kernel gains is measured in docs/benchmarks/.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <tuple>
#include <vector>
#include <type_traits>

namespace {

// 32-byte vectors that may sit at any element boundary (alignment of one element). Loads and
// stores go through these typed pointers, not memcpy: a char-typed copy may alias anything,
// which makes the compiler reload every captured size and pointer inside the hot loops.
template <typename T> struct VecOf { using type = T; };
template <> struct VecOf<float> {
  typedef float type __attribute__((vector_size(32), aligned(alignof(float))));
};
template <> struct VecOf<double> {
  typedef double type __attribute__((vector_size(32), aligned(alignof(double))));
};

// Lanes of V over scalar T (1 when V is T itself).
template <typename V, typename T> constexpr int64_t lanes = sizeof(V) / sizeof(T);

// V, once deduced as a template argument, has lost the reduced alignment (as V{} values it
// only lives in registers); memory is always reached through VecOf<T>::type itself.
template <typename V, typename T> inline V load(const T* p) {
  if constexpr (std::is_same_v<V, T>) return *p;
  else return *reinterpret_cast<const typename VecOf<T>::type*>(p);
}
template <typename V, typename T> inline void store(T* p, const V& v) {
  if constexpr (std::is_same_v<V, T>) *p = v;
  else *reinterpret_cast<typename VecOf<T>::type*>(p) = v;
}

// Sum of a vector's lanes: log2(lanes) shuffle-and-add steps where the compiler has
// __builtin_shufflevector (Clang, GCC >= 12), else lane by lane.
template <typename T, typename V> inline T hsum(V v) {
  if constexpr (std::is_same_v<T, V>) {
    return v;
  } else {
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
    if constexpr (lanes<V, T> == 8) {
      v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3);
      v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5);
      v += __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6);
      return v[0];
    } else if constexpr (lanes<V, T> == 4) {
      v += __builtin_shufflevector(v, v, 2, 3, 0, 1);
      v += __builtin_shufflevector(v, v, 1, 0, 3, 2);
      return v[0];
    }
#endif
    T s = v[0];
    for (int64_t i = 1; i < lanes<V, T>; ++i) s += v[i];
    return s;
  }
}

template <int K> using Blocks = std::integral_constant<int, K>;

// Covers columns [n0, n1) for a body called as body(Blocks<K>{}, V{}, n): K vectors of type V
// starting at column n, in blocks of 4, 2, 1 vectors, then scalars (V = T).
template <typename T, typename Body>
inline void for_blocks(int64_t n0, int64_t n1, const Body& body) {
  using V = typename VecOf<T>::type;
  constexpr int64_t L = sizeof(V) / sizeof(T);
  int64_t n = n0;
  for (; n + 4 * L <= n1; n += 4 * L) body(Blocks<4>{}, V{}, n);
  for (; n + 2 * L <= n1; n += 2 * L) body(Blocks<2>{}, V{}, n);
  for (; n + L <= n1; n += L) body(Blocks<1>{}, V{}, n);
  for (; n < n1; ++n) body(Blocks<1>{}, T{}, n);
}

// What a row's elements go through as they are loaded: nothing, or a ReLU (the experts' last
// activation, fused into the gate mixing). Both work on scalars and on vectors.
struct Plain {
  template <typename V> V operator()(const V& v) const { return v; }
};
struct Relu {
  template <typename V> V operator()(const V& v) const { return v > V{} ? v : V{}; }
};

// For each block of K vectors [o, o + K·L) of columns [0, width): Q accumulators per vector,
// acc[q][i] = init(v, column), handed to body(k, v, acc, o) (k and v carry K and the vector
// type V, as in for_blocks), where they stay in registers.
template <int Q, typename T, typename Init, typename Body>
inline void accumulate_blocks(int64_t width, const Init& init, const Body& body) {
  for_blocks<T>(0, width, [&](auto k, auto v, int64_t o) {
    using V = decltype(v);
    constexpr int K = decltype(k)::value;
    V acc[Q][K];
    for (int q = 0; q < Q; ++q)
      for (int i = 0; i < K; ++i) acc[q][i] = init(v, o + i * lanes<V, T>);
    body(k, v, acc, o);
  });
}

// dst(q)[0:width] = sum_j a(q, j) * f(src(j)[0:width]) for q < Q over rows j < n (src(j)
// points at row j's first column): each block of vectors is accumulated in registers over all
// the rows, and the Q outputs share each load of a row block.
template <int Q, typename T, typename A, typename S, typename D, typename F = Plain>
inline void weighted_rows_q(int64_t n, const A& a, const S& src, int64_t width, const D& dst,
                            const F& f = {}) {
  accumulate_blocks<Q, T>(
      width, [](auto v, int64_t) { return decltype(v){}; },
      [&](auto k, auto v, auto& acc, int64_t o) {
        using V = decltype(v);
        constexpr int K = decltype(k)::value;
        constexpr int64_t L = lanes<V, T>;
        for (int64_t j = 0; j < n; ++j) {
          const T* row = src(j) + o;
          V r[K];
          for (int i = 0; i < K; ++i) r[i] = f(load<V>(row + i * L));
          for (int q = 0; q < Q; ++q) {
            const T c = a(q, j);
            for (int i = 0; i < K; ++i) acc[q][i] += c * r[i];
          }
        }
        for (int q = 0; q < Q; ++q)
          for (int i = 0; i < K; ++i) store(dst(q) + o + i * L, acc[q][i]);
      });
}

// dst[0:width] = sum_j a(j) * f(src(j)[0:width]) over rows j < n.
template <typename T, typename A, typename S, typename F = Plain>
inline void weighted_rows(int64_t n, const A& a, const S& src, int64_t width, T* dst,
                          const F& f = {}) {
  weighted_rows_q<1, T>(n, [&](int, int64_t j) { return a(j); }, src, width,
                        [&](int) { return dst; }, f);
}

// Items per thread chunk so that a chunk holds at least ~32k multiply-adds (ATen's grain).
inline int64_t grain(int64_t work_per_item) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, work_per_item));
}

// acc[r] += sum_j x(r, j) * w[j * O + o : + K vectors] for R rows r: each load of a weight
// row block serves all R rows (the small products of grouped_matmul and of the folded layer's
// numeric columns).
template <int R, int K, typename V, typename T, typename X>
inline void rows_times_weight(V (&acc)[R][K], const X& x, const T* w, int64_t I, int64_t O,
                              int64_t o) {
  constexpr int64_t L = lanes<V, T>;
  for (int64_t j = 0; j < I; ++j) {
    V wv[K];
    for (int i = 0; i < K; ++i) wv[i] = load<V>(w + j * O + o + i * L);
    for (int r = 0; r < R; ++r) {
      const T a = x(r, j);
      for (int i = 0; i < K; ++i) acc[r][i] += a * wv[i];
    }
  }
}

// For rows b of [b0, b1), four at a time then one by one (R = 4, then 1), and each block of K
// vectors [o, o + K·L) of the O outputs: acc[r] = init(o) + sum_j x(b + r, j) * w[j * O + o]
// (rows_times_weight), then finish(b, acc, o) with acc V[R][K]: the small products whose
// weight loads the R rows share (grouped_matmul, the folded layer's numeric columns).
template <typename T, typename Init, typename X, typename Finish>
inline void rows_times_weight_blocks(int64_t b0, int64_t b1, const T* w, int64_t I, int64_t O,
                                     const Init& init, const X& x, const Finish& finish) {
  auto run = [&](auto r_, int64_t b) {
    constexpr int R = decltype(r_)::value;
    accumulate_blocks<R, T>(O, init, [&](auto k, auto, auto& acc, int64_t o) {
      rows_times_weight<R, decltype(k)::value>(
          acc, [&](int r, int64_t j) { return x(b + r, j); }, w, I, O, o);
      finish(b, acc, o);
    });
  };
  int64_t b = b0;
  for (; b + 4 <= b1; b += 4) run(Blocks<4>{}, b);
  for (; b < b1; ++b) run(Blocks<1>{}, b);
}

// The folded first layer of several stacked layers that read the same input x (experts and
// gates: layer l holds G_l groups, weight (G_l, I, O_l), bias (G_l, O_l)). Each (layer, group)
// is a segment of width O_l; n0 = the sum of the widths before it (N in all). The folded
// table is kept segment by segment, T_s (V, O_l) at table + V * n0, so that the gather for
// one segment reads a block small enough for the L1 cache (32 KB for V = 502, O = 16) instead
// of one strided line per table row. Outputs and their gradients stay in the layers'
// (G_l, B, O_l) layout.
struct Segment {
  int64_t n0, width, layer, group;
};

std::vector<Segment> segments_of(at::TensorList weights) {
  std::vector<Segment> segs;
  int64_t n0 = 0;
  for (size_t l = 0; l < weights.size(); ++l)
    for (int64_t g = 0; g < weights[l].size(0); n0 += weights[l].size(2), ++g)
      segs.push_back({n0, weights[l].size(2), static_cast<int64_t>(l), g});
  return segs;
}

// Calls fn(s, i0, i1) for each run of one segment (or group) s in the chunk [q0, q1) of the
// flattened (segment, item) space of S * n items (how at::parallel_for splits such loops).
template <typename Fn>
inline void segment_runs(int64_t q0, int64_t q1, int64_t n, const Fn& fn) {
  for (int64_t q = q0; q < q1;) {
    const int64_t s = q / n, i = q % n, len = std::min(q1 - q, n - i);
    fn(s, i, i + len);
    q += len;
  }
}

// Pointers of the layers' tensors (nullptr for an undefined one), as scalar_t.
template <typename T> std::vector<T*> pointers(const std::vector<at::Tensor>& ts) {
  std::vector<T*> ps;
  for (const auto& t : ts) ps.push_back(t.defined() ? t.data_ptr<T>() : nullptr);
  return ps;
}

// The folded tables relative to each column's base row (see lookups_of): for every segment s and
// row v of column c = column[v], T_s[v] = (emb[v] - emb[base[c]]) @ W_s[rows of column c], zero
// at the base rows themselves, and base_s = bias_s + sum_c emb[base[c]] @ W_s[rows of column c]
// (N values, segment s at n0), so that x @ W_s + bias_s = base_s + sum over a row's lookups of T_s.
template <typename T>
void fold_table(const T* emb, int64_t V_, int64_t D, const int64_t* column, const int32_t* base,
                int64_t C, int64_t I, int64_t n_num, const std::vector<Segment>& segs,
                const std::vector<T*>& w, const std::vector<T*>& bias, T* table, T* base_sum) {
  const int64_t S = static_cast<int64_t>(segs.size());
  at::parallel_for(0, S * V_, grain(D * segs[0].width), [&](int64_t q0, int64_t q1) {
    segment_runs(q0, q1, V_, [&](int64_t s, int64_t v0, int64_t v1) {
      const auto& sg = segs[s];
      const T* ws = w[sg.layer] + (sg.group * I + n_num) * sg.width;
      for (int64_t v = v0; v < v1; ++v) {
        const T* rows = ws + column[v] * D * sg.width;
        const T* e0 = emb + base[column[v]] * D;
        weighted_rows(D, [&](int64_t d) { return emb[v * D + d] - e0[d]; },
                      [&](int64_t d) { return rows + d * sg.width; }, sg.width,
                      table + V_ * sg.n0 + v * sg.width);
      }
    });
  });
  for (const auto& sg : segs) {  // C * D rows per segment: small
    const T* ws = w[sg.layer] + (sg.group * I + n_num) * sg.width;
    T* dst = base_sum + sg.n0;
    weighted_rows(C * D, [&](int64_t j) { return emb[base[j / D] * D + j % D]; },
                  [&](int64_t j) { return ws + j * sg.width; }, sg.width, dst);
    if (const T* b = bias[sg.layer])
      for (int64_t o = 0; o < sg.width; ++o) dst[o] += b[sg.group * sg.width + o];
  }
}

// out_l[g, b] = base_s + numeric[b] @ W_s[:n_num] + sum of T_s over row b's lookups, for
// segment s of (l, g): threads split the flattened (segment, row) space; each block of output
// vectors is summed in registers over the numeric columns and the lookups (two chains of adds).
template <typename T>
void gather_sum(const T* table, const T* base_sum, int64_t V_, const int32_t* start,
                const int32_t* rows, const T* numeric, int64_t n_num, int64_t B, int64_t I,
                const std::vector<Segment>& segs, const std::vector<T*>& w,
                const std::vector<T*>& outs) {
  const int64_t S = static_cast<int64_t>(segs.size());
  const int64_t per_row = start[B] / std::max<int64_t>(1, B) + n_num;
  at::parallel_for(0, S * B, grain(per_row * segs[0].width), [&](int64_t q0, int64_t q1) {
    segment_runs(q0, q1, B, [&](int64_t s, int64_t b0, int64_t b1) {
      const auto& sg = segs[s];
      const int64_t O = sg.width;
      const T* tab = table + V_ * sg.n0;
      const T* wn = w[sg.layer] + sg.group * I * O;  // its numeric rows
      rows_times_weight_blocks<T>(
          b0, b1, wn, n_num, O,
          [&](auto v, int64_t at) { return load<decltype(v)>(base_sum + sg.n0 + at); },
          [&](int64_t row, int64_t j) { return numeric[row * n_num + j]; },
          [&](int64_t b, auto& acc, int64_t o) {
            using A = std::remove_reference_t<decltype(acc)>;
            using V = std::remove_all_extents_t<A>;
            constexpr int R = std::extent_v<A, 0>, K = std::extent_v<A, 1>;
            constexpr int64_t L = lanes<V, T>;
            for (int q = 0; q < R; ++q) {
              V odd[K];  // two chains of adds per vector: latency, not loads, bounds one
              for (int i = 0; i < K; ++i) odd[i] = V{};
              int64_t c = start[b + q];
              const int64_t end = start[b + q + 1];
              for (; c + 1 < end; c += 2) {
                const T* src = tab + rows[c] * O + o;
                const T* src2 = tab + rows[c + 1] * O + o;
                for (int i = 0; i < K; ++i) acc[q][i] += load<V>(src + i * L);
                for (int i = 0; i < K; ++i) odd[i] += load<V>(src2 + i * L);
              }
              if (c < end)
                for (int i = 0; i < K; ++i) acc[q][i] += load<V>(tab + rows[c] * O + o + i * L);
              T* dst = outs[sg.layer] + (sg.group * B + b + q) * O;
              for (int i = 0; i < K; ++i) store(dst + o + i * L, acc[q][i] + odd[i]);
            }
          });
    });
  });
}

// The output gradients' part of the backward, one segment per thread item: the table's
// gradient dT_s[r] += grad_s[b] for row b's lookups r (a block of grad_s[b] stays in registers
// across them), d_bias_s = sum_b grad_s[b], then each base row's gradient (it enters every row
// through base_s and leaves it through each other lookup of its column):
// dT_s[base[c]] = d_bias_s - sum of dT_s over column c's other rows; and the numeric rows of
// the weight's gradient dW_s[j] = sum_b numeric[b, j] grad_s[b]. grad_l (G_l, B, O_l) has
// strides (sg, sb, 1), or is nullptr when that output took no part in the loss (zero
// gradients). Column c's rows are [col_start[c], col_start[c + 1]).
template <typename T>
void scatter_rows(const std::vector<const T*>& grads, const std::vector<int64_t>& sg,
                  const std::vector<int64_t>& sb, const int32_t* start, const int32_t* base,
                  const int32_t* rows, const std::vector<int64_t>& col_start, const T* numeric,
                  int64_t n_num, int64_t B, int64_t V_, int64_t I,
                  const std::vector<Segment>& segs, T* d_table, const std::vector<T*>& d_w,
                  const std::vector<T*>& d_bias) {
  const int64_t C = static_cast<int64_t>(col_start.size()) - 1;
  at::parallel_for(0, static_cast<int64_t>(segs.size()), 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const auto& seg = segs[s];
      const int64_t O = seg.width;
      T* dtab = d_table + V_ * seg.n0;
      T* db = d_bias[seg.layer] + seg.group * O;
      T* dwn = d_w[seg.layer] + seg.group * I * O;  // numeric rows
      std::fill(dtab, dtab + V_ * O, T(0));
      const T* grad = grads[seg.layer];
      if (grad == nullptr) {
        std::fill(db, db + O, T(0));
        std::fill(dwn, dwn + n_num * O, T(0));
        continue;
      }
      grad += seg.group * sg[seg.layer];
      const int64_t stride = sb[seg.layer];
      for_blocks<T>(0, O, [&](auto k, auto v, int64_t o) {
        using V = decltype(v);
        constexpr int K = decltype(k)::value;
        constexpr int64_t L = lanes<V, T>;
        V sum[K];
        for (int i = 0; i < K; ++i) sum[i] = V{};
        for (int64_t b = 0; b < B; ++b) {
          V g[K];
          for (int i = 0; i < K; ++i) g[i] = load<V>(grad + b * stride + o + i * L);
          for (int i = 0; i < K; ++i) sum[i] += g[i];
          for (int64_t c = start[b]; c < start[b + 1]; ++c) {
            T* dst = dtab + rows[c] * O + o;
            for (int i = 0; i < K; ++i) store(dst + i * L, load<V>(dst + i * L) + g[i]);
          }
        }
        for (int i = 0; i < K; ++i) store(db + o + i * L, sum[i]);
      });
      for (int64_t c = 0; c < C; ++c) {  // the base row of a column holds zeros until here
        T* dst = dtab + base[c] * O;
        std::copy(db, db + O, dst);
        for (int64_t v = col_start[c]; v < col_start[c + 1]; ++v)
          if (v != base[c])
            for (int64_t o = 0; o < O; ++o) dst[o] -= dtab[v * O + o];
      }
      // dW_s[j] = sum_b numeric[b, j] grad_s[b]: J = 4 (then 1) rows j share each grad load
      auto numeric_rows = [&](auto j_, int64_t j0) {
        weighted_rows_q<decltype(j_)::value, T>(
            B, [&](int q, int64_t b) { return numeric[b * n_num + j0 + q]; },
            [&](int64_t b) { return grad + b * stride; }, O,
            [&](int q) { return dwn + (j0 + q) * O; });
      };
      int64_t j = 0;
      for (; j + 4 <= n_num; j += 4) numeric_rows(Blocks<4>{}, j);
      for (; j < n_num; ++j) numeric_rows(Blocks<1>{}, j);
    }
  });
}

// The table's part of the backward, from dT: d_emb[v, d] = sum_s <dT_s[v], W_s[row(v, d)]>
// with row(v, d) = n_num + column[v] * D + d (threads split v; up to four d share each load
// of dT_s[v]), and the categorical rows of each weight gradient,
// dW_s[n_num + c * D + d] = sum over column c's rows v of emb[v, d] * dT_s[v] (threads split
// the segments). A column's rows are the contiguous range [start[c], start[c + 1]).
template <typename T>
void fold_table_backward(const T* d_table, const T* emb, const int64_t* column,
                         const std::vector<int64_t>& start, int64_t V_, int64_t D, int64_t I,
                         int64_t n_num, const std::vector<Segment>& segs,
                         const std::vector<T*>& w, T* d_emb, const std::vector<T*>& d_w) {
  using VT = typename VecOf<T>::type;
  constexpr int64_t L = sizeof(VT) / sizeof(T);
  at::parallel_for(0, V_, grain(D * segs.size() * segs[0].width), [&](int64_t v0, int64_t v1) {
    for (int64_t v = v0; v < v1; ++v) {
      auto rows_of = [&](auto nd, int64_t d0) {
        constexpr int ND = decltype(nd)::value;
        VT acc[ND];
        T tail[ND];
        for (int i = 0; i < ND; ++i) acc[i] = VT{}, tail[i] = T(0);
        for (const auto& sg : segs) {
          const int64_t O = sg.width;
          const T* a = d_table + V_ * sg.n0 + v * O;
          const T* wr = w[sg.layer] + (sg.group * I + n_num + column[v] * D + d0) * O;
          int64_t o = 0;
          for (; o + L <= O; o += L) {
            const VT av = load<VT>(a + o);
            for (int i = 0; i < ND; ++i) acc[i] += av * load<VT>(wr + i * O + o);
          }
          for (; o < O; ++o)
            for (int i = 0; i < ND; ++i) tail[i] += a[o] * wr[i * O + o];
        }
        for (int i = 0; i < ND; ++i) d_emb[v * D + d0 + i] = hsum<T>(acc[i]) + tail[i];
      };
      int64_t d = 0;
      for (; d + 4 <= D; d += 4) rows_of(Blocks<4>{}, d);
      for (; d < D; ++d) rows_of(Blocks<1>{}, d);
    }
  });
  const int64_t C = static_cast<int64_t>(start.size()) - 1;
  at::parallel_for(0, static_cast<int64_t>(segs.size()), 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const auto& sg = segs[s];
      const int64_t O = sg.width;
      const T* dtab = d_table + V_ * sg.n0;
      T* dw = d_w[sg.layer] + (sg.group * I + n_num) * O;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t d = 0; d < D; ++d)
          weighted_rows(start[c + 1] - start[c],
                        [&](int64_t j) { return emb[(start[c] + j) * D + d]; },
                        [&](int64_t j) { return dtab + (start[c] + j) * O; }, O,
                        dw + (c * D + d) * O);
    }
  });
}

// First row of each column's vocabulary, and V at the end: column (V,) must list the columns
// 0..C-1 in order, each over a contiguous range of rows (as FeatureEncoder lays them out).
std::vector<int64_t> column_starts(const at::Tensor& column, int64_t C) {
  const int64_t* col = column.data_ptr<int64_t>();
  const int64_t V_ = column.numel();
  std::vector<int64_t> start{0};
  for (int64_t v = 1; v < V_; ++v) {
    TORCH_CHECK(col[v] == col[v - 1] || col[v] == col[v - 1] + 1,
                "fold_linear: column (V,) must number the columns in order");
    if (col[v] != col[v - 1]) start.push_back(v);
  }
  TORCH_CHECK(V_ > 0 && col[0] == 0 && static_cast<int64_t>(start.size()) == C,
              "fold_linear: column (V,) must cover the ", C, " columns");
  start.push_back(V_);
  return start;
}

// Checks weights (G_l, I, O_l) of one input width and emb's dtype; returns I.
int64_t check_weights(at::TensorList weights, const at::Tensor& emb) {
  TORCH_CHECK(!weights.empty(), "fold_linear: at least one layer expected");
  const int64_t I = weights[0].size(1);
  for (const auto& w : weights)
    TORCH_CHECK(w.dim() == 3 && w.size(1) == I && w.scalar_type() == emb.scalar_type(),
                "fold_linear: weights (G, I, O) of one input width and emb's dtype expected");
  return I;
}

std::vector<at::Tensor> contiguous(at::TensorList ts) {
  std::vector<at::Tensor> out;
  for (const auto& t : ts) out.push_back(t.contiguous());
  return out;
}

// A batch's lookups relative to each column's base row, its most frequent row among the
// batch's first kBaseSample rows (the first of equals; a sample is enough to find a dominant
// code, and counting every lookup cost 7% of the forward):
//   sum_c T[rows[b, c]] = sum_c T[base[c]] + sum over c with rows[b, c] != base[c] of
//                         (T[rows[b, c]] - T[base[c]]),
// so the gather and the backward's scatter touch only the other lookups. Tabular columns are
// skewed: on census the most frequent code of a column covers 27-99% of the rows, two thirds
// of all lookups. Row b's other lookups are rows[start[b] : start[b + 1]] (start (B + 1,),
// base (C,), rows (B * C,) of which start[B] are used; all int32). Checks that every code lies
// in its column's rows [col_start[c], col_start[c + 1]).
constexpr int64_t kBaseSample = 128;

std::tuple<at::Tensor, at::Tensor, at::Tensor> lookups_of(const at::Tensor& codes,
                                                         const at::Tensor& offsets,
                                                         const std::vector<int64_t>& col_start) {
  const int64_t B = codes.size(0), C = codes.size(1);
  const auto int32 = codes.options().dtype(at::kInt);
  auto start = at::empty({B + 1}, int32), base = at::empty({C}, int32);
  auto rows = at::empty({B * C}, int32);
  const auto cd = codes.to(at::kLong).contiguous();
  const auto off = offsets.to(at::kLong).contiguous();
  const int64_t* cp = cd.data_ptr<int64_t>();
  const int64_t* op = off.data_ptr<int64_t>();
  std::vector<int64_t> lo(col_start.begin(), col_start.end() - 1);  // column c's rows: [lo, hi)
  std::vector<int64_t> hi(col_start.begin() + 1, col_start.end());
  std::vector<int32_t> all(B * C);  // every lookup's row
  int64_t outside = 0;  // counted, not branched on: the loop vectorises
  for (int64_t b = 0; b < B; ++b) {
    const int64_t* code = cp + b * C;
    int32_t* row = all.data() + b * C;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t r = code[c] + op[c];
      outside += (r < lo[c]) | (r >= hi[c]);
      row[c] = static_cast<int32_t>(r);
    }
  }
  if (outside)
    for (int64_t i = 0; i < B * C; ++i) {
      const int64_t c = i % C, r = cp[i] + op[c];
      TORCH_CHECK(r >= lo[c] && r < hi[c], "fold_linear: code ", cp[i], " of column ", c,
                  " (row ", r, ") is outside its rows [", lo[c], ", ", hi[c], ")");
    }
  std::vector<int32_t> count(col_start.back(), 0);
  for (int64_t i = 0; i < std::min(B, kBaseSample) * C; ++i) ++count[all[i]];
  int32_t* bp = base.data_ptr<int32_t>();
  for (int64_t c = 0; c < C; ++c)
    bp[c] = static_cast<int32_t>(std::max_element(count.begin() + col_start[c],
                                                  count.begin() + col_start[c + 1]) -
                                 count.begin());
  int32_t* sp = start.data_ptr<int32_t>();
  int32_t* rp = rows.data_ptr<int32_t>();
  int32_t n = 0;
  for (int64_t b = 0; b < B; ++b) {
    sp[b] = n;
    for (int64_t c = 0; c < C; ++c) {  // every row is written, the next overwrites a base row
      const int32_t r = all[b * C + c];
      rp[n] = r;
      n += r != bp[c];
    }
  }
  sp[B] = n;
  return {start, base, rows};
}

// The folded first layer of several stacked layers in one call. With x the encoder's output
// [numeric, emb[rows[:, 0]], ..., emb[rows[:, C-1]]] (never materialised), rows = codes +
// offsets, for each layer l:
//   out_l[g] = x @ weights[l][g] + biases[l][g]      (G_l, B, O_l)
// computed per segment s = (l, g) as base_s + numeric @ W_s[:n_num] + the sum of the folded
// table T_s over the row's lookups other than the base rows (see lookups_of and fold_table).
// Returns the outputs and, last, the lookups (start, base, rows) that the backward reads.
std::vector<at::Tensor> fold_linear(const c10::optional<at::Tensor>& numeric,
                                    const at::Tensor& codes, const at::Tensor& offsets,
                                    const at::Tensor& emb, const at::Tensor& column,
                                    at::TensorList weights,
                                    const c10::List<c10::optional<at::Tensor>>& biases) {
  const int64_t B = codes.size(0), C = codes.size(1), V_ = emb.size(0), D = emb.size(1);
  const int64_t I = check_weights(weights, emb), n_num = I - C * D;
  TORCH_CHECK(biases.size() == weights.size(), "fold_linear: one bias (or None) per weight");
  TORCH_CHECK(n_num >= 0 && (n_num == 0 || (numeric.has_value() && numeric->size(1) == n_num &&
                                            numeric->size(0) == B)),
              "fold_linear: weights must have n_num + C * D input rows");
  TORCH_CHECK(column.numel() == V_ && offsets.numel() == C,
              "fold_linear: column (V,) and offsets (C,) expected");
  const auto segs = segments_of(weights);
  const auto ws = contiguous(weights);
  std::vector<at::Tensor> bs, outs;
  for (size_t l = 0; l < weights.size(); ++l) {
    const auto& b = biases.get(l);
    bs.push_back(b.has_value() ? b->contiguous() : at::Tensor());
    outs.push_back(at::empty({weights[l].size(0), B, weights[l].size(2)}, emb.options()));
  }
  const auto col = column.to(at::kLong).contiguous();
  at::Tensor start, base, rows;
  std::tie(start, base, rows) = lookups_of(codes, offsets, column_starts(col, C));
  const auto e = emb.contiguous();
  const auto x = n_num ? numeric->to(e.scalar_type()).contiguous() : at::Tensor();
  const int64_t N = segs.back().n0 + segs.back().width;
  auto table = at::empty({V_ * N}, e.options());
  auto base_sum = at::empty({N}, e.options());
  AT_DISPATCH_FLOATING_TYPES(e.scalar_type(), "fold_linear", [&] {
    using T = scalar_t;
    const auto w = pointers<T>(ws);
    fold_table(e.data_ptr<T>(), V_, D, col.data_ptr<int64_t>(), base.data_ptr<int32_t>(), C, I,
               n_num, segs, w, pointers<T>(bs), table.data_ptr<T>(), base_sum.data_ptr<T>());
    gather_sum(table.data_ptr<T>(), base_sum.data_ptr<T>(), V_, start.data_ptr<int32_t>(),
               rows.data_ptr<int32_t>(), n_num ? x.data_ptr<T>() : nullptr, n_num, B, I, segs, w,
               pointers<T>(outs));
  });
  outs.insert(outs.end(), {start, base, rows});
  return outs;
}

// Gradients of fold_linear: d_emb (V, D), d_weights (G_l, I, O_l), d_biases (G_l, O_l), from
// the outputs' gradients (None for an output the loss did not use) and the forward's lookups.
std::tuple<at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>> fold_linear_backward(
    const c10::List<c10::optional<at::Tensor>>& grads, const c10::optional<at::Tensor>& numeric,
    const at::Tensor& start, const at::Tensor& base, const at::Tensor& rows,
    const at::Tensor& emb, const at::Tensor& column, at::TensorList weights) {
  const int64_t B = start.numel() - 1, C = base.numel(), V_ = emb.size(0), D = emb.size(1);
  const int64_t I = check_weights(weights, emb), n_num = I - C * D;
  TORCH_CHECK(grads.size() == weights.size() && start.scalar_type() == at::kInt &&
                  base.scalar_type() == at::kInt && rows.scalar_type() == at::kInt &&
                  rows.numel() == B * C,
              "fold_linear_backward: one gradient per layer and fold_linear's lookups expected");
  const auto segs = segments_of(weights);
  const auto ws = contiguous(weights);
  const auto col = column.to(at::kLong).contiguous();
  const auto col_start = column_starts(col, C);
  const auto e = emb.contiguous();
  const auto x = n_num ? numeric->to(e.scalar_type()).contiguous() : at::Tensor();
  auto d_table = at::empty({V_ * (segs.back().n0 + segs.back().width)}, e.options());
  auto d_emb = at::empty_like(e);
  std::vector<at::Tensor> g_kept, d_weights, d_biases;
  std::vector<int64_t> sg, sb;
  for (size_t l = 0; l < weights.size(); ++l) {
    const auto& g = grads.get(l);
    auto gl = g.has_value() && g->defined() ? (g->stride(2) == 1 ? *g : g->contiguous())
                                            : at::Tensor();
    sg.push_back(gl.defined() ? gl.stride(0) : 0);
    sb.push_back(gl.defined() ? gl.stride(1) : 0);
    g_kept.push_back(gl);
    d_weights.push_back(at::empty_like(ws[l]));  // every row is written below
    d_biases.push_back(at::empty({weights[l].size(0), weights[l].size(2)}, e.options()));
  }
  AT_DISPATCH_FLOATING_TYPES(e.scalar_type(), "fold_linear_backward", [&] {
    using T = scalar_t;
    std::vector<const T*> g_ptrs;
    for (const auto& g : g_kept) g_ptrs.push_back(g.defined() ? g.data_ptr<T>() : nullptr);
    const auto dw = pointers<T>(d_weights);
    scatter_rows(g_ptrs, sg, sb, start.data_ptr<int32_t>(), base.data_ptr<int32_t>(),
                 rows.data_ptr<int32_t>(), col_start, n_num ? x.data_ptr<T>() : nullptr, n_num,
                 B, V_, I, segs, d_table.data_ptr<T>(), dw, pointers<T>(d_biases));
    fold_table_backward(d_table.data_ptr<T>(), e.data_ptr<T>(), col.data_ptr<int64_t>(),
                        col_start, V_, D, I, n_num, segs, pointers<T>(ws), d_emb.data_ptr<T>(),
                        dw);
  });
  return {d_emb, d_weights, d_biases};
}

// out (G, B, O) = x[g] @ weight[g] + bias[g] for G small independent layers: x (G, B, I) with
// strides (sg, sb, 1), weight (G, I, O) contiguous, bias (G, O) or nullptr. Four rows at a
// time share each weight block load; threads split the rows of every group (a batched GEMM is
// slow for such thin matrices).
template <typename T>
void grouped_matmul(const T* x, int64_t sg, int64_t sb, const T* weight, const T* bias,
                    int64_t G, int64_t B, int64_t I, int64_t O, T* out) {
  at::parallel_for(0, G * B, grain(I * O), [&](int64_t q0, int64_t q1) {
    segment_runs(q0, q1, B, [&](int64_t g, int64_t b0, int64_t b1) {  // rows of group g
      const T* xg = x + g * sg;
      rows_times_weight_blocks<T>(
          b0, b1, weight + g * I * O, I, O,
          [&](auto v, int64_t at) {
            using V = decltype(v);
            return bias ? load<V>(bias + g * O + at) : V{};
          },
          [&](int64_t row, int64_t j) { return xg[row * sb + j]; },
          [&](int64_t b, auto& acc, int64_t o) {
            using A = std::remove_reference_t<decltype(acc)>;
            constexpr int R = std::extent_v<A, 0>, K = std::extent_v<A, 1>;
            constexpr int64_t L = lanes<std::remove_all_extents_t<A>, T>;
            for (int r = 0; r < R; ++r)
              for (int i = 0; i < K; ++i) store(out + (g * B + b + r) * O + o + i * L, acc[r][i]);
          });
    });
  });
}

at::Tensor grouped_linear(const at::Tensor& x, const at::Tensor& weight,
                          const c10::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.dim() == 3 && weight.dim() == 3 && x.size(0) == weight.size(0) &&
                  x.size(2) == weight.size(1) && x.scalar_type() == weight.scalar_type(),
              "grouped_linear: x (G, B, I) and weight (G, I, O) of one dtype expected");
  const auto xs = x.stride(2) == 1 ? x : x.contiguous();
  const auto w = weight.contiguous();
  const auto b = bias.has_value() ? bias->contiguous() : at::Tensor();
  const int64_t G = xs.size(0), B = xs.size(1), I = xs.size(2), O = w.size(2);
  auto out = at::empty({G, B, O}, xs.options());
  AT_DISPATCH_FLOATING_TYPES(xs.scalar_type(), "grouped_linear", [&] {
    grouped_matmul(xs.data_ptr<scalar_t>(), xs.stride(0), xs.stride(1), w.data_ptr<scalar_t>(),
                   b.defined() ? b.data_ptr<scalar_t>() : nullptr, G, B, I, O,
                   out.data_ptr<scalar_t>());
  });
  return out;
}

// Gradients of grouped_linear: d_x (G, B, I) = grad[g] @ weight[g]^T (the same kernel on the
// transposed weight), d_weight (G, I, O) = x[g]^T @ grad[g] and d_bias (G, O) = sum_b grad[g, b]
// (threads split the groups; a block of grad[g, b] stays in registers across the I rows).
std::tuple<at::Tensor, at::Tensor, at::Tensor> grouped_linear_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight) {
  const auto gr = grad.contiguous();
  const auto xs = x.stride(2) == 1 ? x : x.contiguous();
  const auto wt = weight.transpose(1, 2).contiguous();  // (G, O, I)
  const int64_t G = xs.size(0), B = xs.size(1), I = xs.size(2), O = wt.size(1);
  auto d_x = at::empty({G, B, I}, xs.options());
  auto d_w = at::empty({G, I, O}, xs.options());
  auto d_b = at::empty({G, O}, xs.options());
  AT_DISPATCH_FLOATING_TYPES(xs.scalar_type(), "grouped_linear_backward", [&] {
    using T = scalar_t;
    const T* gp = gr.data_ptr<T>();
    const T* xp = xs.data_ptr<T>();
    T* dwp = d_w.data_ptr<T>();
    T* dbp = d_b.data_ptr<T>();
    const int64_t sg = xs.stride(0), sb = xs.stride(1);
    grouped_matmul(gp, B * O, O, wt.data_ptr<T>(), static_cast<const T*>(nullptr), G, B, O, I,
                   d_x.data_ptr<T>());
    at::parallel_for(0, G, grain(B * I * O), [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g) {
        const T* grad_g = gp + g * B * O;
        auto src = [&](int64_t b) { return grad_g + b * O; };
        weighted_rows(B, [](int64_t) { return T(1); }, src, O, dbp + g * O);
        auto rows = [&](auto j_, int64_t j0) {  // four rows j of d_w share each grad load
          weighted_rows_q<decltype(j_)::value, T>(
              B, [&](int q, int64_t b) { return xp[g * sg + b * sb + j0 + q]; }, src, O,
              [&](int q) { return dwp + (g * I + j0 + q) * O; });
        };
        int64_t j = 0;
        for (; j + 4 <= I; j += 4) rows(Blocks<4>{}, j);
        for (; j < I; ++j) rows(Blocks<1>{}, j);
      }
    });
  });
  return {d_x, d_w, d_b};
}

// out (G, B, H): out[g, b] = sum_e gates[g, b, e] * f(experts[e, b]) with f = ReLU when relu
// is set (the experts' last activation, applied as they are read), else the identity; any
// strides with a unit-stride last dimension (the experts usually arrive as a transposed
// (B, E, H) block).
at::Tensor mix(const at::Tensor& gates, const at::Tensor& experts, bool relu) {
  TORCH_CHECK(gates.dim() == 3 && experts.dim() == 3 && gates.size(2) == experts.size(0) &&
                  gates.size(1) == experts.size(1),
              "mix: gates (G, B, E) and experts (E, B, H) expected");
  const auto gt = gates.contiguous();
  const auto ex = experts.stride(2) == 1 ? experts : experts.contiguous();
  const int64_t G = gt.size(0), B = gt.size(1), E = gt.size(2), H = ex.size(2);
  const int64_t se = ex.stride(0), sb = ex.stride(1);
  auto out = at::empty({G, B, H}, gt.options());
  AT_DISPATCH_FLOATING_TYPES(gt.scalar_type(), "mix", [&] {
    using T = scalar_t;
    const T* gp = gt.data_ptr<T>();
    const T* xp = ex.data_ptr<T>();
    T* op = out.data_ptr<T>();
    at::parallel_for(0, B, grain(G * E * H), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t g = 0; g < G; ++g) {
          const T* gate = gp + (g * B + b) * E;
          auto coef = [&](int64_t e) { return gate[e]; };
          auto src = [&](int64_t e) { return xp + e * se + b * sb; };
          if (relu)
            weighted_rows(E, coef, src, H, op + (g * B + b) * H, Relu{});
          else
            weighted_rows(E, coef, src, H, op + (g * B + b) * H);
        }
      }
    });
  });
  return out;
}

// Gradients of mix: d_gates (G, B, E), d_experts (E, B, H) (contiguous; with relu, the
// gradient of the pre-activations: zero where experts[e, b] <= 0).
std::tuple<at::Tensor, at::Tensor> mix_backward(const at::Tensor& grad, const at::Tensor& gates,
                                                const at::Tensor& experts, bool relu) {
  const auto gr = grad.contiguous();
  const auto gt = gates.contiguous();
  const auto ex = experts.stride(2) == 1 ? experts : experts.contiguous();
  const int64_t G = gt.size(0), B = gt.size(1), E = gt.size(2), H = ex.size(2);
  const int64_t se = ex.stride(0), sb = ex.stride(1);
  auto d_gates = at::empty_like(gt);
  auto d_experts = at::empty({E, B, H}, gt.options());
  AT_DISPATCH_FLOATING_TYPES(gt.scalar_type(), "mix_backward", [&] {
    using T = scalar_t;
    const T* rp = gr.data_ptr<T>();
    const T* gp = gt.data_ptr<T>();
    const T* xp = ex.data_ptr<T>();
    T* dgp = d_gates.data_ptr<T>();
    T* dxp = d_experts.data_ptr<T>();
    // One pass per (row, expert) over the blocks of H: each block of x = experts[e, b] and of
    // grad[g, b] is loaded once for both d_experts[e, b] = f'(x) sum_g gates[g, b, e] grad[g, b]
    // and d_gates[g, b, e] = <grad[g, b], f(x)> (one lane sum per block).
    at::parallel_for(0, B, grain(2 * G * E * H), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t g = 0; g < G; ++g) std::fill_n(dgp + (g * B + b) * E, E, T(0));
        for (int64_t e = 0; e < E; ++e) {
          const T* x = xp + e * se + b * sb;
          T* dx = dxp + (e * B + b) * H;
          for_blocks<T>(0, H, [&](auto k, auto v, int64_t o) {
            using V = decltype(v);
            constexpr int K = decltype(k)::value;
            constexpr int64_t L = lanes<V, T>;
            V xv[K], acc[K];  // xv: f(x)
            for (int i = 0; i < K; ++i) xv[i] = load<V>(x + o + i * L), acc[i] = V{};
            if (relu)
              for (int i = 0; i < K; ++i) xv[i] = Relu{}(xv[i]);
            for (int64_t g = 0; g < G; ++g) {
              const T* gr = rp + (g * B + b) * H + o;
              const T gate = gp[(g * B + b) * E + e];
              V prod = V{};
              for (int i = 0; i < K; ++i) {
                const V r = load<V>(gr + i * L);
                acc[i] += gate * r;
                prod += r * xv[i];
              }
              dgp[(g * B + b) * E + e] += hsum<T>(prod);
            }
            if (relu)  // ReLU' = 1 where the output f(x) > 0
              for (int i = 0; i < K; ++i) acc[i] = xv[i] > V{} ? acc[i] : V{};
            for (int i = 0; i < K; ++i) store(dx + o + i * L, acc[i]);
          });
        }
      }
    });
  });
  return {d_gates, d_experts};
}

// out_k = columns_k.index_select(0, index) for every column of a table at once (any dtype,
// rows of any width): a batch's rows are scattered over a table far larger than the caches,
// so each copy first prefetches the row kAhead places ahead, keeping several memory reads in
// flight.
constexpr int64_t kAhead = 16;

std::vector<at::Tensor> take_rows(at::TensorList columns, const at::Tensor& index) {
  TORCH_CHECK(index.dim() == 1 && (index.scalar_type() == at::kLong ||
                                   index.scalar_type() == at::kInt),
              "take_rows: index (n,) of int64 or int32 expected");
  const auto idx = index.to(at::kLong).contiguous();
  const int64_t n = idx.numel();
  const int64_t* ip = idx.data_ptr<int64_t>();
  std::vector<at::Tensor> outs;
  for (const auto& column : columns) {
    const auto col = column.contiguous();
    TORCH_CHECK(col.dim() >= 1, "take_rows: columns of at least one dimension expected");
    const int64_t N = col.size(0);
    for (int64_t i = 0; i < n; ++i)
      TORCH_CHECK(ip[i] >= 0 && ip[i] < N, "take_rows: index ", ip[i], " out of range for ", N,
                  " rows");
    auto sizes = col.sizes().vec();
    sizes[0] = n;
    auto out = at::empty(sizes, col.options());
    const int64_t row = N ? col.numel() / N * col.element_size() : 0;  // bytes
    const char* src = static_cast<const char*>(col.data_ptr());
    char* dst = static_cast<char*>(out.data_ptr());
    at::parallel_for(0, n, 256, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        if (i + kAhead < i1) {
          const char* ahead = src + ip[i + kAhead] * row;
          for (int64_t b = 0; b < row; b += 64) __builtin_prefetch(ahead + b);
        }
        std::memcpy(dst + i * row, src + ip[i] * row, row);
      }
    });
    outs.push_back(out);
  }
  return outs;
}

}  // namespace

TORCH_LIBRARY(mmoe_native, m) {
  m.def("grouped_linear(Tensor x, Tensor weight, Tensor? bias) -> Tensor");
  m.def("grouped_linear_backward(Tensor grad, Tensor x, Tensor weight) -> (Tensor, Tensor, Tensor)");
  m.def("mix(Tensor gates, Tensor experts, bool relu=False) -> Tensor");
  m.def("mix_backward(Tensor grad, Tensor gates, Tensor experts, bool relu=False) -> (Tensor, "
        "Tensor)");
  m.def("fold_linear(Tensor? numeric, Tensor codes, Tensor offsets, Tensor emb, Tensor column, "
        "Tensor[] weights, Tensor?[] biases) -> Tensor[]");
  m.def("fold_linear_backward(Tensor?[] grads, Tensor? numeric, Tensor start, Tensor base, "
        "Tensor rows, Tensor emb, Tensor column, Tensor[] weights) -> (Tensor, Tensor[], "
        "Tensor[])");
  m.def("take_rows(Tensor[] columns, Tensor index) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(mmoe_native, CPU, m) {
  m.impl("grouped_linear", &grouped_linear);
  m.impl("grouped_linear_backward", &grouped_linear_backward);
  m.impl("mix", &mix);
  m.impl("mix_backward", &mix_backward);
  m.impl("fold_linear", &fold_linear);
  m.impl("fold_linear_backward", &fold_linear_backward);
  m.impl("take_rows", &take_rows);
}
