/*
 * Checkpoint and restart from C: this job writes a field (block rows over its ranks), writes
 * a checkpoint of it to a directory, then restores that checkpoint as a new array in another
 * layout (cyclic rows) and checks every element. A later job (another number of ranks, any
 * layout of the same shape) restores it the same way: see docs/CHECKPOINT.md.
 *
 * Usage: mpirun -np N checkpoint DIR   (JUXMEM_CLUSTER, JUXMEM_FEDERATION_DIR set)
 * Prints "CHECKPOINT version=V wrong=W" on rank 0 (W: elements that did not come back; 0).
 */
#include <juxmem.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

enum { ROWS = 96, COLS = 50 };

#define CHECK(call)                                                                       \
  do {                                                                                    \
    juxmem_status s_ = (call);                                                            \
    if (s_ != JUXMEM_OK) {                                                                \
      fprintf(stderr, "%s failed: %s (%s)\n", #call, juxmem_strerror(s_),                 \
              juxmem_last_error_message());                                               \
      MPI_Abort(MPI_COMM_WORLD, 1);                                                       \
    }                                                                                     \
  } while (0)

/* The field's value at (row, col). */
static double value(uint64_t row, uint64_t col) { return (double)row * 1000.0 + (double)col; }

int main(int argc, char **argv) {
  int provided, rank, nprocs;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &nprocs);
  if (argc < 2) {
    if (rank == 0) fprintf(stderr, "usage: checkpoint DIR\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  const char *dir = argv[1];
  struct juxmem_context *ctx = NULL;
  CHECK(juxmem_init(MPI_COMM_WORLD, &ctx));

  /* Write the field in block rows, then checkpoint the version written. */
  const uint64_t shape[2] = {ROWS, COLS}, grid[2] = {(uint64_t)nprocs, 1};
  const juxmem_dist block[2] = {JUXMEM_BLOCK, JUXMEM_BLOCK};
  const juxmem_dist cyclic[2] = {JUXMEM_CYCLIC, JUXMEM_BLOCK};
  struct juxmem_layout *rows = NULL, *dealt = NULL;
  CHECK(juxmem_layout_new(2, shape, block, NULL, grid, &rows));
  CHECK(juxmem_layout_new(2, shape, cyclic, NULL, grid, &dealt));
  struct juxmem_array *field = NULL;
  CHECK(juxmem_array_create(ctx, "ckpt-c/field", JUXMEM_TYPE_DOUBLE, rows, NULL, &field));
  CHECK(juxmem_array_acquire(field, 60.0));
  void *data = NULL;
  uint64_t local[2], offset[2];
  CHECK(juxmem_array_local_write(field, &data, local, offset));
  double *mine = data;
  for (uint64_t i = 0; i < local[0]; i++)
    for (uint64_t j = 0; j < local[1]; j++)
      mine[i * local[1] + j] = value(offset[0] + i, offset[1] + j);
  uint64_t released = 0, written = 0;
  CHECK(juxmem_array_release(field, &released));
  CHECK(juxmem_array_acquire_read(field, JUXMEM_EXACTLY, released, 60.0, NULL));
  CHECK(juxmem_array_checkpoint(field, dir, &written));
  CHECK(juxmem_array_release_read(field));

  /* Restart: the checkpoint as a new array in cyclic rows; every element read back. */
  struct juxmem_array *back = NULL;
  CHECK(juxmem_restore(ctx, dir, "ckpt-c/restored", JUXMEM_TYPE_DOUBLE, dealt, NULL, &back));
  CHECK(juxmem_array_acquire_read(back, JUXMEM_LATEST, 0, 60.0, NULL));
  double *all = malloc(sizeof(double) * ROWS * COLS);
  const uint64_t lo[2] = {0, 0}, hi[2] = {ROWS - 1, COLS - 1};
  CHECK(juxmem_array_get(back, lo, hi, all, NULL));
  long wrong = 0;
  for (uint64_t r = 0; r < ROWS; r++)
    for (uint64_t c = 0; c < COLS; c++)
      if (all[r * COLS + c] != value(r, c)) wrong++;
  CHECK(juxmem_array_release_read(back));
  long total = 0;
  MPI_Reduce(&wrong, &total, 1, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
  if (rank == 0) printf("CHECKPOINT version=%llu wrong=%ld\n", (unsigned long long)written, total);

  /* The whole namespace: checkpointed to DIR-ns, restored as another namespace, read back;
   * destroying the copy needs the confirmation since it holds arrays. */
  char nsdir[4096];
  snprintf(nsdir, sizeof nsdir, "%s-ns", dir);
  if (rank == 0) CHECK(juxmem_namespace_create(ctx, "ckpt-c"));
  MPI_Barrier(MPI_COMM_WORLD);
  CHECK(juxmem_namespace_checkpoint(ctx, "ckpt-c", nsdir));
  struct juxmem_names *copies = NULL;
  CHECK(juxmem_namespace_restore(ctx, nsdir, "ckpt-c-copy", &copies));
  size_t restored = 0;
  CHECK(juxmem_names_count(copies, &restored));
  juxmem_names_free(copies);
  struct juxmem_array *copy = NULL;
  CHECK(juxmem_array_open(ctx, "ckpt-c-copy/field", JUXMEM_TYPE_DOUBLE, rows, 60.0, &copy));
  CHECK(juxmem_array_acquire_read(copy, JUXMEM_LATEST, 0, 60.0, NULL));
  CHECK(juxmem_array_get(copy, lo, hi, all, NULL));
  long ns_wrong = 0;
  for (uint64_t r = 0; r < ROWS; r++)
    for (uint64_t c = 0; c < COLS; c++)
      if (all[r * COLS + c] != value(r, c)) ns_wrong++;
  CHECK(juxmem_array_release_read(copy));
  juxmem_array_close(copy);
  MPI_Barrier(MPI_COMM_WORLD);
  int busy = 0;
  if (rank == 0) {
    busy = juxmem_namespace_destroy(ctx, "ckpt-c-copy", 0) == JUXMEM_E_BUSY;
    CHECK(juxmem_namespace_destroy(ctx, "ckpt-c-copy", 1));
  }
  long ns_total = 0;
  MPI_Reduce(&ns_wrong, &ns_total, 1, MPI_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
  if (rank == 0) printf("NAMESPACE restored=%zu wrong=%ld busy=%d\n", restored, ns_total, busy);
  total += ns_total;

  free(all);
  juxmem_array_close(back);
  juxmem_array_close(field);
  juxmem_layout_free(dealt);
  juxmem_layout_free(rows);
  CHECK(juxmem_finalize(ctx));
  MPI_Finalize();
  return total == 0 ? 0 : 1;
}
