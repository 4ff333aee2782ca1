program hello
  use, intrinsic :: iso_c_binding
  use mpi
  use juxmem
  implicit none
  type(juxmem_context) :: ctx
  type(juxmem_layout) :: blocks, cyclics
  type(juxmem_array) :: a, b
  real(c_double), pointer :: part(:)
  integer(c_int64_t) :: first(1), version, i, n, np
  integer :: ierr, provided, rank, nprocs, wrong

  call MPI_Init_thread(MPI_THREAD_FUNNELED, provided, ierr)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
  call MPI_Comm_size(MPI_COMM_WORLD, nprocs, ierr)
  n = 1000
  np = nprocs
  call juxmem_init(MPI_COMM_WORLD, ctx, ierr)
  if (ierr /= JUXMEM_OK) error stop juxmem_error_message()
  call juxmem_layout_new([n], [JUXMEM_BLOCK], [np], blocks, ierr)
  call juxmem_layout_new([n], [JUXMEM_CYCLIC], [np], cyclics, ierr)

  call juxmem_array_create(ctx, 'hello/fortran', JUXMEM_TYPE_DOUBLE, blocks, a, ierr)
  if (ierr /= JUXMEM_OK) error stop juxmem_error_message()
  call juxmem_array_acquire(a, ierr)
  call juxmem_array_local_write(a, part, ierr, first)
  do i = 1, size(part, kind=c_int64_t)
    part(i) = 0.5_c_double * real(first(1) + i - 1, c_double)   ! global 1-based index
  end do
  call juxmem_array_release(a, ierr, version)

  call juxmem_array_open(ctx, 'hello/fortran', JUXMEM_TYPE_DOUBLE, cyclics, b, ierr)
  call juxmem_array_acquire_read(b, JUXMEM_EXACTLY, version, ierr)
  if (ierr /= JUXMEM_OK) error stop juxmem_error_message()
  call juxmem_array_local_read(b, part, ierr)
  wrong = 0
  do i = 1, size(part, kind=c_int64_t)   ! cyclic: local i holds global rank + 1 + (i - 1) * np
    if (part(i) /= 0.5_c_double * real(rank + 1 + (i - 1) * np, c_double)) wrong = wrong + 1
  end do
  call juxmem_array_release_read(b, ierr)
  print '(a,i0,a,i0,a,i0,a)', 'rank ', rank, ': ', size(part), &
    ' elements read back in cyclic layout, ', wrong, ' wrong'

  call juxmem_array_close(b)
  call juxmem_array_destroy(a, ierr)   ! collective: the name and every copy are freed
  if (ierr /= JUXMEM_OK) error stop juxmem_error_message()
  call juxmem_layout_free(blocks)
  call juxmem_layout_free(cyclics)
  call juxmem_finalize(ctx, ierr)
  call MPI_Finalize(ierr)
  if (wrong /= 0) error stop 1
end program hello
