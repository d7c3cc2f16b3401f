// Micro-batch planning for variable-length RL batches: balance sequences across data-parallel ranks, then
// pack each rank's sequences into micro-batches under a token budget, with the same micro-batch count on
// every rank (Megatron's pipeline schedule runs the same number of micro-batches everywhere).
//
// The algorithm, step by step (srpo_mcore/train/packing.py holds a pure-Python reference of the same
// steps; the two must give identical results):
//   1. order sequences by length, longest first (ties: lower index first);
//   2. balance across ranks: LPT (each sequence to the rank with the fewest tokens, ties: lower rank), or,
//      with equal_counts, per chunk of num_ranks sequences the longest goes to the lightest rank, the next
//      to the next lightest, and so on (counts then differ by at most one);
//   3. pack each rank first-fit decreasing (each sequence into the lowest-numbered micro-batch with room,
//      else a new one); a max segment tree over remaining capacity finds that micro-batch in O(log n);
//   4. bring every rank to M = max(micro-batches of any rank, min_micro_batches): split the heaviest
//      micro-batch holding >= 2 sequences (ties: lower position) into two halves by LPT (the first half
//      stays in place, the second goes last) until the rank has M, then pad with empty micro-batches;
//   5. order each rank's micro-batches by tokens, heaviest first (stable), so micro-batch i is of similar
//      size on every rank.
// Output: sequence indices grouped rank-major then micro-batch-major, and CSR offsets of the
// num_ranks * M micro-batches.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <functional>
#include <numeric>
#include <queue>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace {

using Bin = std::vector<int64_t>;  // sequence indices

std::vector<int64_t> longest_first(const int64_t* lengths, int64_t n) {
  std::vector<int64_t> order(n);
  const int64_t max_length = n ? *std::max_element(lengths, lengths + n) : 0;
  if (max_length < (int64_t{1} << 31) && n < (int64_t{1} << 32)) {
    // Fast path: one 64-bit key per sequence, (2^31 - 1 - length) above the index, sorted ascending.
    std::vector<uint64_t> keys(n);
    for (int64_t i = 0; i < n; ++i) keys[i] = (uint64_t(INT32_MAX - lengths[i]) << 32) | uint64_t(i);
    std::sort(keys.begin(), keys.end());
    for (int64_t k = 0; k < n; ++k) order[k] = int64_t(keys[k] & 0xFFFFFFFFu);
    return order;
  }
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [lengths](int64_t a, int64_t b) {
    return lengths[a] != lengths[b] ? lengths[a] > lengths[b] : a < b;
  });
  return order;
}

std::vector<Bin> balance_lpt(const int64_t* lengths, const std::vector<int64_t>& order, int64_t num_ranks) {
  using Load = std::pair<int64_t, int64_t>;  // (tokens, rank)
  std::priority_queue<Load, std::vector<Load>, std::greater<Load>> lightest;
  for (int64_t r = 0; r < num_ranks; ++r) lightest.push({0, r});
  std::vector<Bin> ranks(num_ranks);
  for (int64_t i : order) {
    auto [tokens, r] = lightest.top();
    lightest.pop();
    ranks[r].push_back(i);
    lightest.push({tokens + lengths[i], r});
  }
  return ranks;
}

std::vector<Bin> balance_equal_counts(const int64_t* lengths, const std::vector<int64_t>& order,
                                      int64_t num_ranks) {
  std::vector<Bin> ranks(num_ranks);
  std::vector<int64_t> load(num_ranks, 0);
  std::vector<int64_t> by_load(num_ranks);
  const int64_t n = static_cast<int64_t>(order.size());
  for (int64_t start = 0; start < n; start += num_ranks) {
    std::iota(by_load.begin(), by_load.end(), 0);
    std::sort(by_load.begin(), by_load.end(), [&load](int64_t a, int64_t b) {
      return load[a] != load[b] ? load[a] < load[b] : a < b;
    });
    const int64_t chunk = std::min(num_ranks, n - start);
    for (int64_t k = 0; k < chunk; ++k) {
      const int64_t i = order[start + k];
      ranks[by_load[k]].push_back(i);
      load[by_load[k]] += lengths[i];
    }
  }
  return ranks;
}

// First-fit over bins 0..m-1 that all start with `budget` room: the leftmost bin with enough room is an
// opened bin or, failing that, the first unopened one, which is exactly first-fit.
std::vector<Bin> first_fit_decreasing(const int64_t* lengths, const Bin& items, int64_t budget) {
  // Any two first-fit bins together hold more than `budget` tokens, so there are fewer than
  // 2 * total / budget + 1 of them: the tree needs no more leaves than that.
  int64_t total = 0;
  for (int64_t i : items) total += lengths[i];
  const int64_t m = std::min<int64_t>(static_cast<int64_t>(items.size()), 2 * (total / budget) + 2);
  std::vector<Bin> bins;
  if (m == 0) return bins;
  int64_t leaves = 1;
  while (leaves < m) leaves <<= 1;
  std::vector<int64_t> room(2 * leaves, 0);  // max remaining capacity in each subtree
  for (int64_t b = 0; b < m; ++b) room[leaves + b] = budget;
  for (int64_t node = leaves - 1; node >= 1; --node) room[node] = std::max(room[2 * node], room[2 * node + 1]);
  for (int64_t i : items) {
    const int64_t need = lengths[i];
    int64_t node = 1;
    while (node < leaves) node = room[2 * node] >= need ? 2 * node : 2 * node + 1;
    const int64_t b = node - leaves;
    if (b > static_cast<int64_t>(bins.size()) || b >= m) throw std::logic_error("first-fit tree out of range");
    if (b == static_cast<int64_t>(bins.size())) bins.emplace_back();
    bins[b].push_back(i);
    room[node] -= need;
    for (node >>= 1; node >= 1; node >>= 1) room[node] = std::max(room[2 * node], room[2 * node + 1]);
  }
  return bins;
}

int64_t tokens_of(const int64_t* lengths, const Bin& bin) {
  int64_t total = 0;
  for (int64_t i : bin) total += lengths[i];
  return total;
}

void split_to_count(const int64_t* lengths, std::vector<Bin>& bins, int64_t target) {
  std::vector<int64_t> tokens;
  for (const Bin& bin : bins) tokens.push_back(tokens_of(lengths, bin));
  while (static_cast<int64_t>(bins.size()) < target) {
    int64_t heaviest = -1;
    for (int64_t b = 0; b < static_cast<int64_t>(bins.size()); ++b) {
      if (bins[b].size() >= 2 && (heaviest < 0 || tokens[b] > tokens[heaviest])) heaviest = b;
    }
    if (heaviest < 0) break;  // every micro-batch holds one sequence: pad instead
    Bin first, second;
    int64_t first_tokens = 0, second_tokens = 0;
    for (int64_t i : bins[heaviest]) {
      if (first_tokens <= second_tokens) {
        first.push_back(i);
        first_tokens += lengths[i];
      } else {
        second.push_back(i);
        second_tokens += lengths[i];
      }
    }
    bins[heaviest] = std::move(first);
    tokens[heaviest] = first_tokens;
    bins.push_back(std::move(second));
    tokens.push_back(second_tokens);
  }
  bins.resize(std::max<int64_t>(target, static_cast<int64_t>(bins.size())));
}

void heaviest_first(const int64_t* lengths, std::vector<Bin>& bins) {
  std::vector<std::pair<int64_t, Bin>> keyed;
  keyed.reserve(bins.size());
  for (Bin& bin : bins) keyed.emplace_back(tokens_of(lengths, bin), std::move(bin));
  std::stable_sort(keyed.begin(), keyed.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t b = 0; b < bins.size(); ++b) bins[b] = std::move(keyed[b].second);
}

struct Plan {
  std::vector<int64_t> indices;
  std::vector<int64_t> offsets;
  int64_t num_micro_batches = 0;
};

Plan plan(const int64_t* lengths, int64_t n, int64_t num_ranks, int64_t token_budget, bool equal_counts,
          int64_t min_micro_batches) {
  const std::vector<int64_t> order = longest_first(lengths, n);
  const std::vector<Bin> ranks = equal_counts ? balance_equal_counts(lengths, order, num_ranks)
                                              : balance_lpt(lengths, order, num_ranks);
  std::vector<std::vector<Bin>> packed;
  int64_t target = min_micro_batches;
  for (const Bin& rank : ranks) {
    packed.push_back(first_fit_decreasing(lengths, rank, token_budget));
    target = std::max<int64_t>(target, static_cast<int64_t>(packed.back().size()));
  }
  Plan out;
  out.num_micro_batches = target;
  out.indices.reserve(n);
  out.offsets.reserve(num_ranks * target + 1);
  out.offsets.push_back(0);
  for (std::vector<Bin>& bins : packed) {
    split_to_count(lengths, bins, target);
    heaviest_first(lengths, bins);
    for (const Bin& bin : bins) {
      out.indices.insert(out.indices.end(), bin.begin(), bin.end());
      out.offsets.push_back(static_cast<int64_t>(out.indices.size()));
    }
  }
  return out;
}

py::array_t<int64_t> to_numpy(std::vector<int64_t>&& values) {
  auto* owned = new std::vector<int64_t>(std::move(values));
  py::capsule free_when_done(owned, [](void* p) { delete static_cast<std::vector<int64_t>*>(p); });
  return py::array_t<int64_t>(static_cast<py::ssize_t>(owned->size()), owned->data(), free_when_done);
}

py::tuple plan_micro_batches(py::array_t<int64_t, py::array::c_style | py::array::forcecast> lengths,
                             int64_t num_ranks, int64_t token_budget, bool equal_counts,
                             int64_t min_micro_batches) {
  if (lengths.ndim() != 1) throw std::invalid_argument("lengths must be a 1-D array");
  if (num_ranks < 1) throw std::invalid_argument("num_ranks must be >= 1, got " + std::to_string(num_ranks));
  if (token_budget < 1) throw std::invalid_argument("token_budget must be >= 1, got " + std::to_string(token_budget));
  if (min_micro_batches < 1)
    throw std::invalid_argument("min_micro_batches must be >= 1, got " + std::to_string(min_micro_batches));
  const int64_t n = lengths.shape(0);
  const int64_t* data = lengths.data();
  for (int64_t i = 0; i < n; ++i) {
    if (data[i] < 1)
      throw std::invalid_argument("sequence " + std::to_string(i) + " has length " + std::to_string(data[i]) +
                                  "; every sequence needs at least one token");
    if (data[i] > token_budget)
      throw std::invalid_argument("sequence " + std::to_string(i) + " has " + std::to_string(data[i]) +
                                  " tokens, more than the micro-batch token budget " +
                                  std::to_string(token_budget));
  }
  Plan result;
  {
    py::gil_scoped_release released;
    result = plan(data, n, num_ranks, token_budget, equal_counts, min_micro_batches);
  }
  return py::make_tuple(to_numpy(std::move(result.indices)), to_numpy(std::move(result.offsets)),
                        result.num_micro_batches);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "srpo_mcore native helpers: micro-batch planning (see csrc/packing.cpp)";
  m.def("plan_micro_batches", &plan_micro_batches, py::arg("lengths"), py::arg("num_ranks"),
        py::arg("token_budget"), py::arg("equal_counts") = false, py::arg("min_micro_batches") = 1,
        "Balance sequence lengths over ranks and pack each rank into the same number of micro-batches.\n"
        "Returns (indices int64[n], offsets int64[num_ranks * M + 1], M).");
}
