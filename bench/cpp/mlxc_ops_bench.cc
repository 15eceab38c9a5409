// Times `matmul N×N` (or a 1-element add) + eval through mlx-c directly; prints seconds per call
// for each round so the caller can take medians. Usage: mlxc_ops_bench matmul|add N calls rounds
#include <mlx/c/mlx.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

static void check(int rc) {
  if (rc != 0) {
    std::fprintf(stderr, "mlx-c call failed\n");
    std::exit(1);
  }
}

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s matmul|add N calls rounds\n", argv[0]);
    return 2;
  }
  const bool is_matmul = std::strcmp(argv[1], "matmul") == 0;
  const int n = std::atoi(argv[2]);
  const int calls = std::atoi(argv[3]);
  const int rounds = std::atoi(argv[4]);

  mlx_device dev = mlx_device_new();
  check(mlx_get_default_device(&dev));
  mlx_stream s = mlx_stream_new();
  check(mlx_get_default_stream(&s, dev));

  int shape[2] = {is_matmul ? n : 1, is_matmul ? n : 1};
  mlx_array key = mlx_array_new(), a = mlx_array_new(), b = mlx_array_new();
  check(mlx_random_key(&key, 1));
  check(mlx_random_normal(&a, shape, 2, MLX_FLOAT32, 0.0f, 1.0f, key, s));
  check(mlx_random_key(&key, 2));
  check(mlx_random_normal(&b, shape, 2, MLX_FLOAT32, 0.0f, 1.0f, key, s));
  check(mlx_array_eval(a));
  check(mlx_array_eval(b));

  mlx_array c = mlx_array_new();
  for (int round = -1; round < rounds; ++round) {  // round -1 warms up
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < calls; ++i) {
      check(is_matmul ? mlx_matmul(&c, a, b, s) : mlx_add(&c, a, b, s));
      check(mlx_array_eval(c));
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (round >= 0) std::printf("%.9f\n", seconds / calls);
  }
  mlx_array_free(c);
  mlx_array_free(a);
  mlx_array_free(b);
  mlx_array_free(key);
  mlx_stream_free(s);
  mlx_device_free(dev);
  return 0;
}
