! Checkpoint and restart from Fortran (the C example is checkpoint.c): this job writes a field
! (block columns over its ranks), writes a checkpoint of it to a directory, then restores that
! checkpoint as a new array in another layout (cyclic columns) and checks every element. A
! later job (another number of ranks, any layout of the same shape) restores it the same way:
! see docs/CHECKPOINT.md.
!
! In Fortran order the field is F(NI, NJ), column-major and 1-based; its columns (the last,
! slowest index) are dealt over the ranks.
!
! Usage: mpirun -np N checkpoint_f DIR   (JUXMEM_CLUSTER, JUXMEM_FEDERATION_DIR set)
! Prints "CHECKPOINT version=V wrong=W" on rank 0 (W: elements that did not come back; 0).
program checkpoint
  use, intrinsic :: iso_c_binding
  use mpi
  use juxmem
  implicit none

  integer, parameter :: NI = 50, NJ = 96
  real(c_double), parameter :: WAIT = 60.0_c_double

  type(juxmem_context) :: ctx
  type(juxmem_layout) :: columns, dealt
  type(juxmem_array) :: field, back, copy
  real(c_double), pointer :: mine(:, :)
  real(c_double), allocatable :: all(:, :)
  integer(c_int64_t) :: first(2), released, written
  integer :: ierr, provided, rank, nprocs, i, j, wrong, total, ns_total, busy
  character(len=4096) :: dir

  call MPI_Init_thread(MPI_THREAD_FUNNELED, provided, ierr)
  call MPI_Comm_rank(MPI_COMM_WORLD, rank, ierr)
  call MPI_Comm_size(MPI_COMM_WORLD, nprocs, ierr)
  if (command_argument_count() < 1) then
    if (rank == 0) print '(a)', 'usage: checkpoint_f DIR'
    call MPI_Abort(MPI_COMM_WORLD, 2, ierr)
  end if
  call get_command_argument(1, dir)
  call juxmem_init(MPI_COMM_WORLD, ctx, ierr)
  call check('init')

  ! Write the field in block columns, then checkpoint the version written.
  call juxmem_layout_new([int(NI, c_int64_t), int(NJ, c_int64_t)], [JUXMEM_BLOCK, JUXMEM_BLOCK], &
    [1_c_int64_t, int(nprocs, c_int64_t)], columns, ierr)
  call check('layout (block)')
  call juxmem_layout_new([int(NI, c_int64_t), int(NJ, c_int64_t)], [JUXMEM_BLOCK, JUXMEM_CYCLIC], &
    [1_c_int64_t, int(nprocs, c_int64_t)], dealt, ierr)
  call check('layout (cyclic)')
  call juxmem_array_create(ctx, 'ckpt-f/field', JUXMEM_TYPE_DOUBLE, columns, field, ierr)
  call check('create')
  call juxmem_array_acquire(field, ierr, timeout=WAIT)
  call check('acquire')
  call juxmem_array_local_write(field, mine, ierr, first)
  call check('local write')
  do j = 1, size(mine, 2)
    do i = 1, size(mine, 1)
      mine(i, j) = value(int(first(1)) + i - 1, int(first(2)) + j - 1)
    end do
  end do
  call juxmem_array_release(field, ierr, released)
  call check('release')
  call juxmem_array_acquire_read(field, JUXMEM_EXACTLY, released, ierr, timeout=WAIT)
  call check('acquire read')
  call juxmem_array_checkpoint(field, trim(dir), written, ierr)
  call check('checkpoint')
  call juxmem_array_release_read(field, ierr)
  call check('release read')

  ! Restart: the checkpoint as a new array in cyclic columns; every element read back.
  call juxmem_restore(ctx, trim(dir), 'ckpt-f/restored', JUXMEM_TYPE_DOUBLE, dealt, back, ierr)
  call check('restore')
  call juxmem_array_acquire_read(back, JUXMEM_LATEST, 0_c_int64_t, ierr, timeout=WAIT)
  call check('acquire read (restored)')
  allocate (all(NI, NJ))
  call juxmem_array_get(back, [1_c_int64_t, 1_c_int64_t], [int(NI, c_int64_t), int(NJ, c_int64_t)], &
    all, ierr)
  call check('get')
  wrong = 0
  do j = 1, NJ
    do i = 1, NI
      if (all(i, j) /= value(i, j)) wrong = wrong + 1
    end do
  end do
  call juxmem_array_release_read(back, ierr)
  call check('release read (restored)')
  call MPI_Reduce(wrong, total, 1, MPI_INTEGER, MPI_SUM, 0, MPI_COMM_WORLD, ierr)
  if (rank == 0) print '(a,i0,a,i0)', 'CHECKPOINT version=', written, ' wrong=', total

  ! The whole namespace: checkpointed to DIR-ns, restored as another namespace, read back;
  ! destroying the copy needs the confirmation since it holds arrays.
  if (rank == 0) then
    call juxmem_namespace_create(ctx, 'ckpt-f', ierr)
    call check('namespace create')
  end if
  call MPI_Barrier(MPI_COMM_WORLD, ierr)
  call juxmem_namespace_checkpoint(ctx, 'ckpt-f', trim(dir) // '-ns', ierr)
  call check('namespace checkpoint')
  call juxmem_namespace_restore(ctx, trim(dir) // '-ns', 'ckpt-f-copy', ierr)
  call check('namespace restore')
  call juxmem_array_open(ctx, 'ckpt-f-copy/field', JUXMEM_TYPE_DOUBLE, columns, copy, ierr, &
    timeout=WAIT)
  call check('open (namespace copy)')
  call juxmem_array_acquire_read(copy, JUXMEM_LATEST, 0_c_int64_t, ierr, timeout=WAIT)
  call check('acquire read (namespace copy)')
  call juxmem_array_get(copy, [1_c_int64_t, 1_c_int64_t], [int(NI, c_int64_t), int(NJ, c_int64_t)], &
    all, ierr)
  call check('get (namespace copy)')
  wrong = 0
  do j = 1, NJ
    do i = 1, NI
      if (all(i, j) /= value(i, j)) wrong = wrong + 1
    end do
  end do
  call juxmem_array_release_read(copy, ierr)
  call check('release read (namespace copy)')
  call juxmem_array_close(copy)
  call MPI_Barrier(MPI_COMM_WORLD, ierr)
  busy = 0
  if (rank == 0) then
    call juxmem_namespace_destroy(ctx, 'ckpt-f-copy', .false., ierr)
    if (ierr == JUXMEM_E_BUSY) busy = 1
    call juxmem_namespace_destroy(ctx, 'ckpt-f-copy', .true., ierr)
    call check('namespace destroy')
  end if
  call MPI_Reduce(wrong, ns_total, 1, MPI_INTEGER, MPI_SUM, 0, MPI_COMM_WORLD, ierr)
  if (rank == 0) print '(a,i0,a,i0)', 'NAMESPACE wrong=', ns_total, ' busy=', busy
  total = total + ns_total

  call juxmem_array_close(back)
  call juxmem_array_close(field)
  call juxmem_layout_free(dealt)
  call juxmem_layout_free(columns)
  call juxmem_finalize(ctx, ierr)
  call MPI_Finalize(ierr)
  if (rank == 0 .and. total /= 0) stop 1

contains

  ! The field's value at (i, j), global and 1-based.
  pure real(c_double) function value(i, j)
    integer, intent(in) :: i, j
    value = real(j, c_double) * 1000.0_c_double + real(i, c_double)
  end function

  subroutine check(what)
    character(len=*), intent(in) :: what
    integer :: ignored
    if (ierr /= JUXMEM_OK) then
      print '(a,a,a,i0,a,a)', 'checkpoint_f: ', what, ' failed: ', ierr, ': ', &
        juxmem_error_message()
      call MPI_Abort(MPI_COMM_WORLD, 1, ignored)
    end if
  end subroutine

end program
