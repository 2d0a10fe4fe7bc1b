"""``benchmarks/vision_floor.py``: the convolutions of a traced graph (with the task loop's
trips), their FLOP count and the timing of one kernel, on tiny shapes."""

import tensorflow as tf

from benchmarks import vision_floor


def _traced(trips=3):
  x = tf.TensorSpec([2, 8, 8, 3], tf.float32)

  @tf.function
  def step(images):
    w1 = tf.ones([3, 3, 3, 4])
    w2 = tf.ones([3, 3, 4, 4])

    def body(i, total):
      with tf.GradientTape() as tape:
        tape.watch([w1, w2])
        y = tf.nn.conv2d(tf.nn.conv2d(images, w1, 1, "SAME"), w2, 1, "SAME")
        loss = tf.reduce_sum(y)
      g1, g2 = tape.gradient(loss, [w1, w2])
      return i + 1, total + tf.reduce_sum(g1) + tf.reduce_sum(g2)

    _, total = tf.while_loop(lambda i, _: i < trips, body, (0, 0.0))
    return total + tf.reduce_sum(tf.nn.conv2d(images, w1, 1, "SAME"))

  concrete = step.get_concrete_function(x)
  return concrete.graph, concrete.graph._functions  # pylint: disable=protected-access


def test_every_convolution_is_counted_with_the_loop_trips_and_the_image_gradient_left_out():
  graph, functions = _traced()
  counts = vision_floor.convolutions(graph, functions, image_channels=3, while_trips=3)
  first = ((2, 8, 8, 3), (3, 3, 3, 4), (1, 1, 1, 1), "SAME")
  second = ((2, 8, 8, 4), (3, 3, 4, 4), (1, 1, 1, 1), "SAME")
  assert counts == {("Conv2D",) + first: 3 + 1,  # in the loop, and once after it
                    ("Conv2D",) + second: 3,
                    ("Conv2DBackpropFilter",) + first: 3,
                    ("Conv2DBackpropFilter",) + second: 3,
                    ("Conv2DBackpropInput",) + second: 3}  # the image gradient is not read


def test_flops_are_those_of_the_forward_convolution():
  kernel = ("Conv2DBackpropFilter", (25, 42, 42, 48), (3, 3, 48, 48), (1, 1, 1, 1), "SAME")
  assert vision_floor.flops(kernel) == 2 * 25 * 42 * 42 * 9 * 48 * 48
  valid = ("Conv2D", (1, 10, 10, 2), (3, 3, 2, 5), (1, 2, 2, 1), "VALID")
  assert vision_floor.flops(valid) == 2 * 1 * 4 * 4 * 9 * 2 * 5


def test_each_kernel_kind_is_timed_and_tabulated():
  seconds = {}
  counts = {}
  for kind in vision_floor.CONV_TYPES:
    kernel = (kind, (2, 8, 8, 4), (3, 3, 4, 4), (1, 1, 1, 1), "SAME")
    seconds[kernel] = vision_floor.time_kernel(kernel, repeats=2, dtype=tf.float32)
    counts[kernel] = 2
    assert 0 < seconds[kernel] < 1
  rows = vision_floor.table(counts, seconds)
  assert len(rows) == 2 + 3 + 1 and rows[-1].startswith("| all | | 6 |")
  assert "| Conv2D | 2x8x8x4 -> 4, 3x3 | 2 |" in rows[2]
