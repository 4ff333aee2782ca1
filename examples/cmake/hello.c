#include <juxmem.h>
#include <mpi.h>
#include <stdio.h>

#define CHECK(call) do { juxmem_status s_ = (call); if (s_ != JUXMEM_OK) { \
    fprintf(stderr, "%s: %s\n", juxmem_strerror(s_), juxmem_last_error_message()); \
    MPI_Abort(MPI_COMM_WORLD, 1); } } while (0)

int main(int argc, char **argv) {
  int provided;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  juxmem_context *ctx;
  CHECK(juxmem_init(MPI_COMM_WORLD, &ctx));
  uint64_t rank, size, n = 1000, version, shape[1], first[1];
  CHECK(juxmem_context_rank(ctx, &rank, &size));

  juxmem_dist block = JUXMEM_BLOCK, cyclic = JUXMEM_CYCLIC;
  juxmem_layout *blocks, *cyclics;
  CHECK(juxmem_layout_new(1, &n, &block, NULL, &size, &blocks));
  CHECK(juxmem_layout_new(1, &n, &cyclic, NULL, &size, &cyclics));

  juxmem_array *a, *b;
  CHECK(juxmem_array_create(ctx, "hello/c", JUXMEM_TYPE_DOUBLE, blocks, NULL, &a));
  CHECK(juxmem_array_acquire(a, 0));
  double *mine;
  CHECK(juxmem_array_local_write(a, (void **)&mine, shape, first));
  for (uint64_t i = 0; i < shape[0]; i++) mine[i] = 0.5 * (double)(first[0] + i);
  CHECK(juxmem_array_release(a, &version));

  CHECK(juxmem_array_open(ctx, "hello/c", JUXMEM_TYPE_DOUBLE, cyclics, 0, &b));
  CHECK(juxmem_array_acquire_read(b, JUXMEM_EXACTLY, version, 0, NULL));
  const double *got;
  CHECK(juxmem_array_local_read(b, (const void **)&got, shape, NULL));
  int wrong = 0;
  for (uint64_t i = 0; i < shape[0]; i++) wrong += got[i] != 0.5 * (double)(rank + i * size);
  CHECK(juxmem_array_release_read(b));
  printf("rank %llu: %llu elements read back in cyclic layout, %d wrong\n",
         (unsigned long long)rank, (unsigned long long)shape[0], wrong);

  juxmem_array_close(b);
  CHECK(juxmem_array_destroy(a)); /* collective: the name and every copy are freed */
  juxmem_layout_free(blocks);
  juxmem_layout_free(cyclics);
  CHECK(juxmem_finalize(ctx));
  juxmem_context_free(ctx);
  MPI_Finalize();
  return wrong != 0;
}
